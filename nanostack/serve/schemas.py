"""The API's request and response models (pydantic): validation, and the /openapi.json that clients,
schemathesis and /llms.txt read. Built per server, because the limits and the vocabulary are the
served run's: a bound the server enforces is a bound the schema declares.

Unknown fields are refused (400 naming them); OpenAI parameters nanostack does not implement are
accepted only at their neutral value (suffix, best_of, logit_bias, penalties), so a request that
asks for them is refused instead of silently answered without them.
"""
from dataclasses import dataclass
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

# parameters of the OpenAI API that are refused unless neutral: error code unsupported_parameter
UNSUPPORTED = ("suffix", "best_of", "logit_bias", "presence_penalty", "frequency_penalty")
MAX_PROMPTS = 16  # prompts in one completions request (each with its n choices)
MAX_STOPS, MAX_STOP_CHARS = 4, 64
MAX_SEED = 2 ** 53  # the largest integer every JSON client (JavaScript's numbers too) keeps exact


@dataclass(frozen=True)
class Limits:
    max_tokens: int = 2048
    max_prompt_tokens: int = 8192
    max_n: int = 8
    max_messages: int = 500
    max_body: int = 1 << 20


def vocabulary_pattern(tokenizer):
    """A regex matching exactly the texts a char-level tokenizer can encode (None for byte-level BPE,
    which encodes any text)."""
    chars = getattr(tokenizer, "chars", None)
    if chars is None:
        return None
    escaped = "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}" for c in chars)
    return f"^[{escaped}]*$" if chars else "^$"


def check_unicode(value):
    """Text must be encodable: a lone surrogate (valid JSON, "\\ud800") is not a character."""
    texts = value if isinstance(value, list) else [value]
    for text in texts:
        if isinstance(text, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("text is not valid Unicode (it has a lone surrogate)") from None
    return value


STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


def make_schemas(limits: Limits, vocab_size: int, pattern):
    """The request models of one server: (CompletionRequest, ChatRequest)."""
    Text = Annotated[str, Field(max_length=limits.max_prompt_tokens, pattern=pattern)]
    TokenId = Annotated[int, Field(ge=0, le=vocab_size - 1)]
    Tokens = Annotated[list[TokenId], Field(min_length=1, max_length=limits.max_prompt_tokens)]
    Stop = Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]
    Stops = Optional[Union[Stop, Annotated[list[Stop], Field(max_length=MAX_STOPS)]]]

    class StreamOptions(BaseModel):
        model_config = STRICT
        include_usage: Optional[bool] = Field(False, description="send a last chunk with the usage, choices []")

    class Sampling(BaseModel):
        model_config = STRICT
        model: str = Field(description="the served model's id (GET /v1/models)")
        temperature: Optional[float] = Field(1.0, ge=0, le=2, description="0 = greedy")
        top_p: Optional[float] = Field(1.0, gt=0, le=1, description="nucleus sampling")
        top_k: Optional[int] = Field(None, ge=1, le=2 ** 31, description="extension: sample from the k most likely")
        n: Optional[int] = Field(1, ge=1, le=limits.max_n, description="choices per prompt")
        stream: Optional[bool] = Field(False, description="server-sent events, ending with data: [DONE]")
        stream_options: Optional[StreamOptions] = None
        stop: Stops = Field(None, description=f"up to {MAX_STOPS} strings; the text ends before the first one")
        seed: Optional[int] = Field(None, ge=-MAX_SEED, le=MAX_SEED,
                                    description="choice i samples with seed + i: repeatable, batch-independent")
        user: Optional[str] = Field(None, max_length=256, description="accepted, not used")
        presence_penalty: Optional[float] = Field(None, ge=0, le=0, description="unsupported: only 0")
        frequency_penalty: Optional[float] = Field(None, ge=0, le=0, description="unsupported: only 0")
        logit_bias: Optional[dict[str, float]] = Field(None, max_length=0, description="unsupported: only {}")

        _unicode = field_validator("stop", check_fields=False)(check_unicode)

    class CompletionRequest(Sampling):
        prompt: Union[Text, Annotated[list[Text], Field(min_length=1, max_length=MAX_PROMPTS)], Tokens,
                      Annotated[list[Tokens], Field(min_length=1, max_length=MAX_PROMPTS)]] = Field(
            "", description="text, token ids, or a list of either (empty text starts from a newline)")
        max_tokens: Optional[int] = Field(16, ge=0, le=limits.max_tokens,
                                          description="0 with echo scores the prompt only")
        logprobs: Optional[int] = Field(None, ge=0, le=20,
                                        description="log-probability of each token and of this many alternatives")
        echo: Optional[bool] = Field(False, description="return the prompt (and its logprobs) before the completion")
        suffix: Optional[str] = Field(None, max_length=0, description="unsupported: only null or empty")
        best_of: Optional[int] = Field(None, ge=1, le=1, description="unsupported: only 1")

        _prompt_unicode = field_validator("prompt")(check_unicode)

    class TextPart(BaseModel):
        model_config = STRICT
        type: Literal["text"]
        text: Text

        _unicode = field_validator("text")(check_unicode)

    class Message(BaseModel):
        model_config = STRICT
        role: Literal["system", "developer", "user", "assistant"]
        content: Union[Text, Annotated[list[TextPart], Field(max_length=64)]]
        name: Optional[Annotated[str, Field(max_length=64)]] = None

        _unicode = field_validator("content")(check_unicode)

        def text(self) -> str:
            return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)

    class ChatRequest(Sampling):
        # top_logprobs needs logprobs: true (the OpenAI reference's rule, declared so the schema says it too)
        model_config = ConfigDict(**STRICT, json_schema_extra={
            "if": {"required": ["top_logprobs"], "properties": {"top_logprobs": {"type": "integer"}}},
            "then": {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}}})
        messages: Annotated[list[Message], Field(min_length=1, max_length=limits.max_messages)]
        max_tokens: Optional[int] = Field(None, ge=0, le=limits.max_tokens, description="deprecated name")
        max_completion_tokens: Optional[int] = Field(None, ge=0, le=limits.max_tokens,
                                                     description=f"default {limits.max_tokens}")
        logprobs: Optional[bool] = Field(False, description="log-probability of each generated token")
        top_logprobs: Optional[int] = Field(None, ge=0, le=20, description="alternatives per token (needs logprobs)")

    return CompletionRequest, ChatRequest


# ---- responses (documentation: the handlers build plain dicts of these shapes) --------------------------
class ErrorBody(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class Error(BaseModel):
    error: ErrorBody


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[Optional[float]]
    top_logprobs: Optional[list[Optional[dict[str, float]]]] = None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    text: str
    index: int
    finish_reason: Optional[Literal["stop", "length"]] = None
    logprobs: Optional[CompletionLogprobs] = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Optional[Usage] = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: Optional[list[int]] = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: Optional[list[TokenLogprob]] = None


class ChatMessage(BaseModel):
    role: Literal["assistant"]
    content: Optional[str] = None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessage
    finish_reason: Optional[Literal["stop", "length"]] = None
    logprobs: Optional[ChatLogprobs] = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Optional[Usage] = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    block_size: int
    vocab_size: int
    chat_template: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok", "loading"]
    model: str
    device: str
    active: int
    waiting: int
    max_batch: int
