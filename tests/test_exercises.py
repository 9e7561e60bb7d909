"""course_lib.exercises, and every exercise's tests run against its solution and its reference.

The second half reads the 11 masters: for every exercise it runs the exercise's public
and hidden test functions (the code cells between ``# BEGIN TESTS`` and ``# END TESTS``)
(a) on the master's solution and (b) on the course_lib reference that the notebook's
``exercises.answer_or_reference(...)`` call names, so a student who leaves the exercise
as ``...`` continues the lab on a function that passes the same tests. It also checks
that no notebook rebinds an exercise's own name (the autograder grades that name).
"""

import ast
import pathlib

import numpy as np
import pytest

from course_lib import exercises, grading

# --------------------------------------------------------------------------- unanswered


def answered(x):
    """A finished exercise."""
    return x + 1


def placeholder(x):
    """What Otter Assign leaves in a student version."""
    ...
    return x


def nested_placeholder(x):
    if x > 0:
        for _ in range(2):
            ...
    return x


def inner_function_placeholder(x):
    def helper(y):
        ...

    return helper(x)


def ellipsis_as_value(x):
    """Ellipsis used as an index or a value is an answer, not a placeholder."""
    y = np.asarray(x)[..., 0]
    z = ...
    return y, z


def test_unanswered_answered_and_placeholder():
    assert exercises.unanswered(answered) is False
    assert exercises.unanswered(placeholder) is True
    assert exercises.unanswered(ellipsis_as_value) is False


def test_unanswered_nested():
    assert exercises.unanswered(nested_placeholder) is True
    assert exercises.unanswered(inner_function_placeholder) is True


def test_unanswered_lambda_builtin_and_exec():
    f = lambda x: x  # noqa: E731
    assert exercises.unanswered(f) is False
    assert exercises.unanswered(len) is False  # builtin: no source, counted as answered
    namespace = {}
    exec("def g(x):\n    ...\n", namespace)  # no source file: counted as answered
    assert exercises.unanswered(namespace["g"]) is False


def test_unanswered_rejects_non_callable():
    with pytest.raises(TypeError, match="exercise's function"):
        exercises.unanswered(3)
    with pytest.raises(TypeError, match="exercise's function"):
        exercises.unanswered("knn_predict")


def test_answer_or_reference(capsys):
    from course_lib import explain

    assert exercises.answer_or_reference(answered, explain.receptive_field_size, "q2_x") is answered
    assert capsys.readouterr().out == ""
    got = exercises.answer_or_reference(placeholder, explain.receptive_field_size, "q2_receptive_field")
    assert got is explain.receptive_field_size
    out = capsys.readouterr().out
    assert out == ("q2_receptive_field is not answered yet: the cells below use course_lib's reference, "
                   "course_lib.explain.receptive_field_size.\n")
    with pytest.raises(TypeError, match="reference"):
        exercises.answer_or_reference(placeholder, None, "q1_x")


# --------------------------------------------------------------------------- the masters

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.ipynb"))


def _code(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _parse(code: str):
    try:
        return ast.parse(code)
    except SyntaxError:  # a cell with IPython magics
        return None


def _import_namespace(nb) -> dict:
    """The names the notebook imports (its import statements only; no course_lib.setup)."""
    namespace = {}
    for cell in nb.cells:
        tree = _parse(_code(cell)) if cell.cell_type == "code" else None
        if tree is None:
            continue
        imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        exec(compile(ast.Module(imports, []), "<imports>", "exec"), namespace)
    return namespace


def _questions(nb):
    """Per exercise: (name, solution code cells, test code cells, index of its END QUESTION cell)."""
    found, current, in_tests = [], None, False
    for i, cell in enumerate(nb.cells):
        directive = grading._raw_directive(cell)
        if directive == "BEGIN QUESTION":
            current = (grading._raw_config(cell)["name"], [], [])
        elif directive == "BEGIN TESTS":
            in_tests = True
        elif directive == "END TESTS":
            in_tests = False
        elif directive == "END QUESTION":
            found.append((*current, i))
            current = None
        elif current is not None and cell.cell_type == "code":
            (current[2] if in_tests else current[1]).append(_code(cell))
    return found


def _fallbacks(nb, start):
    """The answer_or_reference calls after cell ``start``: [(question, answer, reference expr, bound name)]."""
    calls = []
    for cell in nb.cells[start:]:
        tree = _parse(_code(cell)) if cell.cell_type == "code" else None
        for node in ast.walk(tree) if tree else ():
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) \
                    and ast.unparse(node.value.func).endswith("answer_or_reference"):
                answer, reference, question = node.value.args
                calls.append((question.value, answer.id, ast.unparse(reference), ast.unparse(node.targets[0])))
    return calls


def _cases():
    for path in NOTEBOOKS:
        nb = grading.read_notebook(path)
        written = {ex.name for ex in grading.parse_exercises(path) if ex.manual}  # graded by a person: no function
        for name, _solutions, _tests, _end in _questions(nb):
            if name not in written:
                yield pytest.param(path, name, id=f"{path.stem[:2]}-{name}")


def _defs_and_imports(code: str):
    tree = ast.parse(code)
    keep = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.Import, ast.ImportFrom))]
    return compile(ast.Module(keep, []), "<exercise>", "exec")


def _run_tests(tests, implementations, namespace):
    """Run each test cell's test function on ``implementations`` ({argument name: function})."""
    for code in tests:
        ns = dict(namespace)
        exec(_defs_and_imports(code), ns)
        for fn in [v for k, v in ns.items() if k.startswith("test_") and callable(v)]:
            args = fn.__code__.co_varnames[: fn.__code__.co_argcount]
            fn(*[implementations[a] for a in args])


@pytest.mark.parametrize("path, question", list(_cases()))
def test_exercise_solution_and_reference_pass_its_tests(path, question):
    nb = grading.read_notebook(path)
    (name, solutions, tests, end), = [q for q in _questions(nb) if q[0] == question]
    namespace = _import_namespace(nb)
    solution_ns = dict(namespace)
    for code in solutions:
        exec(_defs_and_imports(code), solution_ns)
    functions = [n.name for code in solutions for n in ast.parse(code).body if isinstance(n, ast.FunctionDef)]
    assert functions, f"{question}: no function defined in its solution cell"

    calls = {answer: (reference, bound) for q, answer, reference, bound in _fallbacks(nb, end) if q == question}
    assert set(calls) == set(functions), (
        f"{path.name}, {question}: every exercise function needs an exercises.answer_or_reference(...) call "
        f"after the question; found calls for {sorted(calls)}, functions {functions}")
    references = {}
    for fn_name, (reference, bound) in calls.items():
        assert bound != fn_name, f"{question}: bind the fallback to a new name, not {fn_name!r}"
        assert reference.split(".")[0] != "exercises" and "course_lib" in eval(reference, namespace).__module__
        references[fn_name] = eval(reference, namespace)

    _run_tests(tests, {f: solution_ns[f] for f in functions}, namespace)  # (a) the master's solution
    _run_tests(tests, references, namespace)  # (b) course_lib's reference


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_no_cell_rebinds_an_exercise_function(path):
    nb = grading.read_notebook(path)
    for name, solutions, _tests, end in _questions(nb):
        functions = {n.name for code in solutions for n in ast.parse(code).body if isinstance(n, ast.FunctionDef)}
        for i, cell in enumerate(nb.cells[end:], start=end):
            tree = _parse(_code(cell)) if cell.cell_type == "code" else None
            for node in ast.walk(tree) if tree else ():
                targets = node.targets if isinstance(node, ast.Assign) else []
                names = {t.id for t in targets if isinstance(t, ast.Name)}
                if isinstance(node, ast.FunctionDef):
                    names.add(node.name)
                assert not names & functions, f"{path.name}, cell {i} rebinds {names & functions} ({name})"


# --------------------------------------------------------------------------- bad input to the references


def _bad_inputs():
    from course_lib import batchnorm, explain, localization, metrics, models, preprocessing, semi_supervised, training

    pd = pytest.importorskip("pandas")
    z = np.zeros
    return [
        (models.knn_predict, (z((5, 2)), z(5, int), z((3, 4)), 1), "must agree"),
        (models.knn_predict, (z((5, 2)), z(5, int), z((3, 2)), 0), "k"),
        (models.conv2d_macs, (8, 8, 6, 4, 3, 1, 4), "groups=4 must divide"),
        (models.channel_shuffle, (z((1, 2, 2, 6), "float32"), 4), "must divide the 6 channels"),
        (preprocessing.channel_stats, (z((4, 4, 3)),), r"\(N, H, W, C\)"),
        (training.pick_config, (pd.DataFrame({"learning_rate": [0.1], "test_accuracy": [0.9]}),), "validation column"),
        (semi_supervised.sharpen_np, (z(3), 0.5), r"\(B, K\)"),
        (semi_supervised.sharpen_np, (np.full((1, 2), 0.5), 0.0), "T must be positive"),
        (training.class_weights, (np.array([0, 0, 2]), 3), "cover every class"),
        (metrics.broken_and_fixed, (z(3), z(3), z(4)), "one shape"),
        (metrics.threshold_for_recall, (np.array([1, 0]), np.array([0.3, 0.1]), 1.5), r"recall in \(0, 1\]"),
        (metrics.threshold_for_recall, (np.array([0, 0]), np.array([0.3, 0.1]), 0.5), "no positive"),
        (metrics.top_confusions, (z((2, 3)), 2), "square"),
        (metrics.row_percentages, (z((2, 3)),), "square"),
        (batchnorm.bn_backward, (z((1, 3)), z((1, 3)), np.ones(3)), "at least 2 values"),
        (metrics.row_percentages, (-np.ones((2, 2)),), "non-negative"),
        (localization.multitask_loss_np, (np.array([0]), z((1, 2)), z((1, 4)), z((1, 4)), 1.0), "strictly between"),
        (explain.cam_weighted_sum, (z((4, 4, 3)), z((2, 5)), 0), r"\(K, classes\)"),
        (explain.grad_cam_map, (z((4, 4, 3)), z((4, 4, 2))), r"\(h, w, K\)"),
        (explain.map_to_box, (z((2, 4, 4)),), r"one \(H, W\) map"),
        (explain.rise_estimate, (z(3), z((4, 5, 5)), 0.5), "one score per mask"),
        (explain.anisotropic_tv, (z(5),), "2-D map"),
    ]


def test_references_reject_bad_input():
    for fn, args, message in _bad_inputs():
        with pytest.raises(ValueError, match=message):
            fn(*args)
