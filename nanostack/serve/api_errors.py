"""Errors as the OpenAI API sends them: {"error": {"message", "type", "param", "code"}}, one line each.

FastAPI's 422 for a body that fails validation becomes a 400 naming the first bad field; a field
nanostack does not implement gets code `unsupported_parameter`.
"""
import re

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from nanostack.serve.schemas import UNSUPPORTED

TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
         405: "invalid_request_error", 413: "invalid_request_error", 503: "overloaded_error"}


MESSAGES = {"string_pattern_mismatch": "text has characters outside the model's vocabulary (a char-level run knows "
                                      "only the characters of its training data)",
            "string_unicode": "text is not valid Unicode (a lone surrogate?)"}


class APIError(Exception):
    def __init__(self, status: int, message: str, param=None, code=None, headers=None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


def error_body(status: int, message: str, param=None, code=None) -> dict:
    return {"error": {"message": " ".join(str(message).split()), "type": TYPES.get(status, "server_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, param=None, code=None, headers=None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


async def on_api_error(request, exc: APIError):
    return error_response(exc.status, exc.message, exc.param, exc.code, exc.headers)


async def on_http_error(request, exc: HTTPException):
    messages = {404: f"no such path: {request.url.path}", 405: f"method {request.method} is not allowed here",
                413: "request body too large"}
    return error_response(exc.status_code, messages.get(exc.status_code, str(exc.detail)), headers=exc.headers)


async def on_validation_error(request, exc: RequestValidationError):
    error = exc.errors()[0]
    # keep field names and list indices; inside a union pydantic also names the member it tried
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    loc = [part for part in loc if re.fullmatch(r"[a-z_]+|\d+", part) and part not in ("str", "int", "list")]
    param = ".".join(loc) or None
    kind = error.get("type", "")
    top = loc[0] if loc else None
    if kind == "extra_forbidden" or top in UNSUPPORTED:
        return error_response(400, f"unsupported parameter {param}: nanostack does not implement it", param,
                              "unsupported_parameter")
    if kind == "json_invalid":
        return error_response(400, "the request body is not valid JSON", None, "invalid_json")
    message = MESSAGES.get(kind) or error.get("msg", "invalid value")
    return error_response(400, f"{param or 'body'}: {message}", param, "invalid_value")
