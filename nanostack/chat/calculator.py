"""The calculator tool: arithmetic on numbers, parsed with `ast` and evaluated here, never by `eval`.

Allowed: integers and decimals, + - * / // % ** and parentheses, unary + and -. Everything else (a
name, an attribute, a call, a string, a comparison) is refused. Limits keep one call small and quick:
the input's length, how many nodes it has, the size of every intermediate number, the exponent, and
a deadline checked at every step. Whatever goes wrong comes back as a string starting with "error:",
which the model reads as the tool's output; the calculator never raises.
"""
import ast
import math
import operator
import time

MAX_INPUT_CHARS = 200
MAX_NODES = 64
MAX_DIGITS = 60          # no intermediate integer may have more digits than this
MAX_EXPONENT = 64
MAX_SECONDS = 0.05

BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class CalculatorError(Exception):
    pass


def calculate(expression: str) -> str:
    """The value of an arithmetic expression as text ("888", "2.5"), or "error: ..." saying why not."""
    try:
        return format_number(evaluate(expression))
    except CalculatorError as e:
        return f"error: {e}"


def evaluate(expression: str):
    if not isinstance(expression, str):
        raise CalculatorError("the input is not text")
    text = expression.strip()
    if not text:
        raise CalculatorError("empty expression")
    if len(text) > MAX_INPUT_CHARS:
        raise CalculatorError(f"expression longer than {MAX_INPUT_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        raise CalculatorError(f"cannot parse {text!r}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalculatorError(f"expression has more than {MAX_NODES} parts")
    deadline = time.perf_counter() + MAX_SECONDS
    return _value(tree.body, deadline)


def _value(node, deadline: float):
    if time.perf_counter() > deadline:
        raise CalculatorError("took too long")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise CalculatorError(f"only numbers are allowed, not {node.value!r}")
        return _checked(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_value(node.operand, deadline))
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _value(node.left, deadline), _value(node.right, deadline)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        try:
            return _checked(BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        except (OverflowError, ValueError) as e:
            raise CalculatorError(str(e)) from None
    if isinstance(node, ast.Name):
        raise CalculatorError(f"names are not allowed ({node.id})")
    if isinstance(node, ast.Attribute):
        raise CalculatorError("attributes are not allowed")
    if isinstance(node, ast.Call):
        raise CalculatorError("calls are not allowed")
    raise CalculatorError(f"{type(node).__name__} is not arithmetic")


def _check_power(base, exponent) -> None:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"exponent {exponent} is larger than {MAX_EXPONENT}")
    if base != 0 and abs(exponent) * math.log10(abs(base)) > MAX_DIGITS:
        raise CalculatorError(f"the result would have more than {MAX_DIGITS} digits")


def _checked(value):
    if isinstance(value, complex):
        raise CalculatorError("the result is not a real number")
    if isinstance(value, int):
        if value and math.log10(abs(value)) >= MAX_DIGITS:  # a float log: quick, even for a huge integer
            raise CalculatorError(f"a number has more than {MAX_DIGITS} digits")
        return value
    if not math.isfinite(value) or abs(value) >= 10.0 ** MAX_DIGITS:
        raise CalculatorError("the result is too large")
    return value


def format_number(value) -> str:
    """Integers as they are; a float that is a whole number without its ".0"; others to 10 significant digits."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return format(value, ".10g")
    return str(value)
