"""Keep a lab going while an exercise is still ``...`` (every notebook, 01 to 11).

In a student notebook each exercise is a function whose body Otter Assign has replaced
by ``...``. Left like that, the function returns ``None`` (or raises a ``NameError``),
and every later cell that uses it breaks. After each exercise the notebooks therefore
pick the function the rest of the lab runs on::

    rf_size = exercises.answer_or_reference(receptive_field_size, explain.receptive_field_size,
                                            "q2_receptive_field")

``rf_size`` is the student's function once it is answered, course_lib's reference until
then (and one printed line says which). The exercise's own name is never rebound, so
the autograder still grades the student's function, not the reference.
"""

from __future__ import annotations

import ast
import inspect
import textwrap


def _is_ellipsis_statement(node) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node.value.value is Ellipsis


def unanswered(fn) -> bool:
    """True when the body of ``fn`` still holds a bare ``...`` statement (Otter's placeholder).

    The statement may sit anywhere in the body, also inside an ``if``, a loop or a nested
    function. A ``...`` used as a value (``x[..., 0]``, ``return ...``) does not count.
    When the source cannot be read (a builtin, a function made by ``exec``), ``fn`` is
    treated as answered: False. Raises TypeError when ``fn`` is not callable.
    """
    if not callable(fn):
        raise TypeError(f"unanswered() takes the exercise's function; got {type(fn).__name__} {fn!r}.")
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return False  # no readable source (builtin, exec, lambda inside an expression): assume answered
    for top in tree.body:
        if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return any(_is_ellipsis_statement(n) for stmt in top.body for n in ast.walk(stmt))
    return False  # e.g. a lambda: its body is an expression, never a bare statement


def answer_or_reference(answer, reference, name: str):
    """``answer`` when the exercise is answered, else ``reference`` and one printed line.

    ``answer`` is the student's function, ``reference`` course_lib's implementation of
    the same signature, ``name`` the exercise (e.g. ``"q2_receptive_field"``). Bind the
    result to a new name: rebinding the exercise's own name would let the autograder
    grade the reference instead of the student's work.
    """
    if not callable(reference):
        raise TypeError(f"reference must be course_lib's function for {name}; got {type(reference).__name__}.")
    if not unanswered(answer):
        return answer
    where = f"{reference.__module__}.{reference.__qualname__}"
    print(f"{name} is not answered yet: the cells below use course_lib's reference, {where}.")
    return reference
