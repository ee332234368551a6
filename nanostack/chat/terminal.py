"""`nanostack chat RUN`: talk to a chat run in the terminal.

Each line you type is a user message; the reply streams as it is generated, with the conversation so
far as its context. Tool calls show as [calculator(37*24) → 888]: the call as the model wrote it, and
after the arrow the output the tool forced in (in colour on a terminal). /reset forgets the history,
/quit (or Ctrl-D) ends; Ctrl-C stops a reply early. A message the tokenizer cannot encode (a character
a char-level run never saw) is refused with a note, and the chat goes on.
"""
import sys

import torch

from nanostack.chat.generate import generate_with_tools
from nanostack.chat.template import has_chat_template, render_for_reply, reply_message
from nanostack.data.chat_format import ASSISTANT_END, OUTPUT_END, OUTPUT_START, TOOL_END, TOOL_START
from nanostack.errors import UserError
from nanostack.run import open_run
from nanostack.sample import check_sampling, stream_decoder

SHOWN = {TOOL_START: "[", TOOL_END: "", OUTPUT_START: " → ", OUTPUT_END: "]"}
CALL_COLOUR, OUTPUT_COLOUR, RESET = "\x1b[33m", "\x1b[36m", "\x1b[0m"
HELP = "/reset forgets the conversation, /quit ends it (or Ctrl-D); Ctrl-C stops a reply"


class ChatSession:
    """A conversation with a model: the history, and one streamed reply per user message."""

    def __init__(self, model, tokenizer, tools: dict, system="", max_new_tokens=256, temperature=0.8, top_k=None,
                 top_p=None, seed=1337):
        if not has_chat_template(tokenizer):
            raise UserError("this run's tokenizer has no chat template (no chat special tokens)",
                            "fine-tune it on conversations first: nanostack train --init RUN --examples chat ...")
        check_sampling(temperature, top_k, top_p)
        self.model, self.tokenizer, self.tools = model, tokenizer, tools
        self.system, self.max_new_tokens = system, max_new_tokens
        self.sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        self.generator = torch.Generator().manual_seed(seed)
        self.names = {i: name for name, i in tokenizer.special_tokens.items()}
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def reply(self, text: str, write, colour=False) -> dict:
        """Stream the reply to `text` through write(str); return it as an assistant message (also kept)."""
        prompt = render_for_reply(self.tokenizer, self.messages + [{"role": "user", "content": text}])
        self.messages.append({"role": "user", "content": text})
        ids, decode, painting = [], stream_decoder(self.tokenizer), ""
        try:
            for step in generate_with_tools(self.model, prompt, self.tokenizer, self.tools, self.max_new_tokens,
                                            generator=self.generator, **self.sampling):
                token = step[0]
                if token is None or self.names.get(token.id) == ASSISTANT_END:
                    break
                ids.append(token.id)
                name = self.names.get(token.id)
                if name in SHOWN:
                    write(decode([], final=True))
                    painting = {TOOL_START: CALL_COLOUR, OUTPUT_START: OUTPUT_COLOUR}.get(name, "")
                    write(SHOWN[name] if not colour else RESET + SHOWN[name] + painting)
                elif name is not None:
                    write(name)
                else:
                    write(decode([token.id]))
        except KeyboardInterrupt:
            write(" (stopped)")
        write(decode([], final=True) + (RESET if colour and painting else "") + "\n")
        message = reply_message(self.tokenizer, ids)
        self.messages.append(message)
        return message


def chat(run_dir, which="best", device="cpu", tools=None, system="", max_new_tokens=256, temperature=0.8, top_k=None,
         top_p=None, seed=1337, read=input, write=None, colour=None) -> None:
    """The interactive loop: read a line, stream the reply; until /quit or end of input."""
    write = write or (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    colour = sys.stdout.isatty() if colour is None else colour
    run = open_run(run_dir)
    session = ChatSession(run.load_model(which, device), run.tokenizer(), tools or {}, system, max_new_tokens,
                          temperature, top_k, top_p, seed)
    names = ", ".join(sorted(tools)) if tools else "none"
    write(f"chatting with {run.path} (tools: {names}). {HELP}\n")
    while True:
        try:
            line = read("you> ")
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return
        if text == "/reset":
            session.reset()
            write("(the conversation is forgotten)\n")
            continue
        write("assistant> ")
        try:
            session.reply(line.rstrip("\n"), write, colour)
        except UserError as e:
            write(f"\nnot sent: {e}\n")
