"""GET /llms.txt: the API in plain Markdown for an agent to read, generated from the same OpenAPI
schema as /openapi.json (so the two cannot disagree): endpoints, each parameter with its type,
default and bounds, the server's limits, and an example."""


def _resolve(schema: dict, spec: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    return schema


def _type(schema: dict, spec: dict) -> str:
    schema = _resolve(schema, spec)
    if "anyOf" in schema:
        return " or ".join(dict.fromkeys(_type(s, spec) for s in schema["anyOf"]))
    if "enum" in schema:
        return " | ".join(map(repr, schema["enum"]))
    if "const" in schema:
        return repr(schema["const"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}), spec)}"
    if "properties" in schema:
        return schema.get("title", "object")
    return schema.get("type", "any")


def _bounds(schema: dict, spec: dict) -> str:
    schema = _resolve(schema, spec)
    found = []
    for s in [schema, *schema.get("anyOf", [])]:
        s = _resolve(s, spec)
        for key, word in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("maxLength", "chars <="),
                          ("minItems", "items >="), ("maxItems", "items <=")):
            if key in s:
                value = s[key]
                found.append(f"{word} {int(value) if isinstance(value, float) and value.is_integer() else value}")
        if s.get("type") == "array":
            found.extend(_bounds(s.get("items", {}), spec).split(", ") if _bounds(s.get("items", {}), spec) else [])
    return ", ".join(dict.fromkeys(found))


def _fields(schema: dict, spec: dict, lines: list, prefix: str = "") -> None:
    schema = _resolve(schema, spec)
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        detail = [_type(prop, spec)]
        if name in required:
            detail.append("required")
        elif "default" in prop and prop["default"] is not None:
            detail.append(f"default {prop['default']!r}")
        bounds = _bounds(prop, spec)
        if bounds:
            detail.append(bounds)
        text = _resolve(prop, spec).get("description") or prop.get("description", "")
        lines.append(f"- `{prefix}{name}` ({'; '.join(detail)}){': ' + text if text else ''}")


def llms_txt(spec: dict, model_id: str, limits, settings) -> str:
    lines = [f"# nanostack serve: {model_id}", "",
             "> An OpenAI-compatible API over one nanostack run. Any OpenAI client works: set its base URL to "
             "this server's `/v1` and `model` to the id below.", "",
             f"- model id: `{model_id}`",
             f"- limits: max_tokens <= {limits.max_tokens}, prompt <= {limits.max_prompt_tokens} tokens, n <= "
             f"{limits.max_n}, {limits.max_messages} messages, body <= {limits.max_body} bytes, queue "
             f"{settings.max_queue} (then 503 with Retry-After), {settings.max_batch} rows decoded together",
             "- auth: `Authorization: Bearer <token>` on /v1, /api and /metrics when the server has a token",
             "- errors: `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`; a parameter nanostack does not "
             "implement is refused with 400 and code `unsupported_parameter`", "",
             "## Endpoints", ""]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            lines.append(f"### {method.upper()} {path}")
            lines.append("")
            if op.get("summary"):
                lines += [op["summary"], ""]
            for param in op.get("parameters", []):
                schema = param.get("schema", {})
                lines.append(f"- `{param['name']}` ({param['in']}; {_type(schema, spec)}"
                             f"{'; ' + _bounds(schema, spec) if _bounds(schema, spec) else ''})")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                lines.append("Body (JSON):")
                _fields(body, spec, lines)
            statuses = ", ".join(f"{code} {r.get('description', '')}".strip() for code, r in op["responses"].items())
            lines += [f"- responses: {statuses}", ""]
    lines += ["## Example", "", "```sh",
              "curl -N http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\",
              f"  -d '{{\"model\": \"{model_id}\", \"prompt\": \"\", \"max_tokens\": 32, \"stream\": true}}'",
              "```", "", "```python", "from openai import OpenAI",
              "client = OpenAI(base_url='http://127.0.0.1:8000/v1', api_key='TOKEN or anything')",
              f"print(client.completions.create(model='{model_id}', prompt='', max_tokens=32).choices[0].text)",
              "```", ""]
    return "\n".join(lines)
