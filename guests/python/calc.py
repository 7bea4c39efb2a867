"""Calculator with exact decimal arithmetic: + - * / ** % and parentheses, 28 significant digits.

Input:  an expression, e.g. "0.1 + 0.2" or "(19.99 * 3) / 7".
Output: the result as a decimal string ("0.3"). Anything but numbers and those operators is refused.
"""
import ast
import decimal

CONTEXT = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN, traps=[decimal.DivisionByZero, decimal.InvalidOperation, decimal.Overflow])
OPERATORS = {
    ast.Add: lambda a, b: CONTEXT.add(a, b),
    ast.Sub: lambda a, b: CONTEXT.subtract(a, b),
    ast.Mult: lambda a, b: CONTEXT.multiply(a, b),
    ast.Div: lambda a, b: CONTEXT.divide(a, b),
    ast.Mod: lambda a, b: CONTEXT.remainder(a, b),
    ast.Pow: lambda a, b: CONTEXT.power(a, b),
}


def evaluate(node):
    if isinstance(node, ast.Expression):
        return evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return decimal.Decimal(str(node.value))
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](evaluate(node.left), evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = evaluate(node.operand)
        return CONTEXT.minus(value) if isinstance(node.op, ast.USub) else value
    raise ValueError("only numbers, + - * / % ** and parentheses are allowed")


def handle(request: bytes):
    tree = ast.parse(request.decode("utf-8").strip(), mode="eval")
    result = evaluate(tree)
    return format(result, "f")
