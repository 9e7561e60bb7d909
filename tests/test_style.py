"""The code is clean by the project's ruff rules (pyproject.toml, [tool.ruff]): course_lib,
tests, slides, benchmarks and every notebook, masters and student versions.

ruff is installed by the README's set-up command (the test extra); this is how CI runs it.
"""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    run = subprocess.run([ruff, "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


# ------------------------------------------------------------------ docstrings of course_lib.explain
#
# One format (numpydoc) for every public function and class of course_lib.explain and for the
# functions of other modules that explain relies on: a summary line, a Parameters section
# naming exactly the signature's parameters, Returns (or Yields), and a Raises section naming
# ValueError exactly when the function can raise one (itself, or through a course_lib function
# it calls). Read from the source with ast: nothing is imported, so this costs milliseconds.

import ast  # noqa: E402
import re  # noqa: E402

import pytest  # noqa: E402

PACKAGE = ROOT / "course_lib"
EXPLAIN_MODULES = ["explain.cam", "explain.gradients", "explain.perturbation", "explain.wsol", "explain.features",
                   "explain.faithfulness", "explain.display", "explain._interpreter", "explain.perception"]
# The other modules' public functions that course_lib.explain calls.
RELIED_ON = [("localization", "box_iou"), ("models", "walk_layers"), ("validation", "check_images"),
             ("validation", "check_positive_int"), ("validation", "class_ids")]
# Modules outside explain held to the same format: every public top-level function and class.
OTHER_MODULES = ["adversarial"]
# Every module whose functions the raise analysis follows (calls into other modules count as not raising).
FOLLOWED = EXPLAIN_MODULES + OTHER_MODULES + ["validation", "localization", "models"]


def _tree(module):
    return ast.parse((PACKAGE / (module.replace(".", "/") + ".py")).read_text())


def _resolve_from(module, node):
    """The dotted course_lib module an ImportFrom names (relative imports resolved), or None outside course_lib."""
    if node.level == 0:
        return node.module[len("course_lib."):] if (node.module or "").startswith("course_lib.") else None
    base = module.split(".")[:-node.level]
    return ".".join(base + ([node.module] if node.module else []))


def _functions():
    """{(module, name): FunctionDef/ClassDef} for the followed modules, and each module's name -> (module, name)."""
    defs, scopes = {}, {}
    for module in FOLLOWED:
        scope = {}
        for node in _tree(module).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defs[(module, node.name)] = node
                scope[node.name] = (module, node.name)
            elif isinstance(node, ast.ImportFrom):
                source = _resolve_from(module, node)
                for alias in node.names:
                    if source is not None:
                        scope[alias.asname or alias.name] = (source, alias.name)
        scopes[module] = scope
    # explain/__init__ re-exports: "from course_lib.explain import x" style calls are not used inside the package.
    return defs, scopes


def _raising():
    """The set of (module, name) that can raise a ValueError, directly or through followed calls."""
    defs, scopes = _functions()
    direct, calls = {}, {}
    for (module, name), node in defs.items():
        direct[(module, name)] = any(
            isinstance(n, ast.Raise) and n.exc is not None and (
                "ValueError" in ast.unparse(n.exc) or ast.unparse(n.exc).endswith(".error"))
            for n in ast.walk(node))
        called = {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        calls[(module, name)] = {scopes[module][c] for c in called if c in scopes[module]}
    raising = {key for key, yes in direct.items() if yes}
    changed = True
    while changed:
        changed = False
        for key, targets in calls.items():
            if key not in raising and any(t in raising for t in targets):
                raising.add(key)
                changed = True
    return raising


def _documented():
    """(module, node) of every public top-level function and class of course_lib.explain and OTHER_MODULES, and RELIED_ON."""
    out = [(module, node) for module in EXPLAIN_MODULES + OTHER_MODULES for node in _tree(module).body
           if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")]
    for module, name in RELIED_ON:
        out += [(module, node) for node in _tree(module).body
                if isinstance(node, ast.FunctionDef) and node.name == name]
    return out


def _sections(doc):
    """{section title: its text} of a numpydoc docstring (titles underlined with dashes)."""
    lines = doc.splitlines()
    heads = [i for i in range(len(lines) - 1)
             if lines[i].strip() and re.fullmatch(r"-{3,}", lines[i + 1].strip())
             and len(lines[i + 1].strip()) == len(lines[i].strip())]
    return {lines[i].strip(): "\n".join(lines[i + 2 : (heads + [len(lines)])[k + 1] - (k + 1 < len(heads))])
            for k, i in enumerate(heads)}


def _parameter_names(section):
    """Names a Parameters section documents: the unindented lines, 'a, b : type' or 'a, b'."""
    names = set()
    for line in section.splitlines():
        if line.strip() and not line.startswith(" "):
            names |= {n.strip().lstrip("*") for n in line.split(" : ")[0].split(",") if n.strip()}
    return names


def _signature(node):
    target = node if isinstance(node, ast.FunctionDef) else next(
        (n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if target is None:
        return set()
    a = target.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs] + [x.arg for x in (a.vararg, a.kwarg) if x]
    return {n for n in names if n not in ("self", "cls")}


DOCUMENTED = _documented()
RAISING = _raising()


def test_the_documented_set_covers_the_public_names_of_course_lib_explain():
    init = _tree("explain.__init__")
    exported = next(ast.literal_eval(n.value) for n in init.body
                    if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets))
    documented = {node.name for module, node in DOCUMENTED if module.startswith("explain.")}
    assert set(exported) <= documented, f"exported but not checked: {sorted(set(exported) - documented)}"
    assert len(DOCUMENTED) >= len(exported) + len(RELIED_ON)
    # Each exported name says where the course uses it ("Used in notebook 07", or "Not used in a notebook").
    for module, node in DOCUMENTED:
        if node.name in exported:
            assert "notebook" in ast.get_docstring(node), f"course_lib.{module}.{node.name}: say which notebook uses it"


@pytest.mark.parametrize("module, node", DOCUMENTED, ids=[f"{m}.{n.name}" for m, n in DOCUMENTED])
def test_public_docstrings_follow_the_one_format(module, node):
    doc = ast.get_docstring(node)
    where = f"course_lib.{module}.{node.name}"
    assert doc, f"{where} has no docstring"
    assert doc.splitlines()[0].strip(), f"{where}: the docstring must start with a one-line summary"
    sections = _sections(doc)
    signature = _signature(node)
    if signature:
        assert "Parameters" in sections, f"{where}: no Parameters section"
        documented = _parameter_names(sections["Parameters"])
        assert documented == signature, (f"{where}: Parameters documents {sorted(documented)} but the signature has "
                                         f"{sorted(signature)}")
    assert "Returns" in sections or "Yields" in sections, f"{where}: no Returns (or Yields) section"
    raises = (module, node.name) in RAISING
    says = "ValueError" in sections.get("Raises", "")
    assert raises == says, (f"{where} can raise ValueError but has no Raises section naming it" if raises else
                            f"{where}: its Raises section names ValueError, but nothing in it raises one")


def test_the_raise_analysis_sees_direct_and_indirect_raises():
    """The check above is only as good as its analysis: known cases, both ways."""
    assert ("validation", "check_images") in RAISING                   # raises itself
    assert ("explain.cam", "grad_cam_plus_plus") in RAISING            # through _select_output / _class_maps
    assert ("explain.features", "feature_map_layers") in RAISING        # through _graph -> _check_model
    assert ("explain.features", "ascent_step") not in RAISING
    assert ("models", "walk_layers") not in RAISING
    assert _sections("S.\n\nRaises\n------\nValueError\n    x.\n")["Raises"].startswith("ValueError")
    assert _parameter_names("a, b : int\n    text : not a name\nc\n**kwargs\n") == {"a", "b", "c", "kwargs"}
