"""From token ids to the text a client receives: whole code points only, stop strings cut off.

A byte-level token can end inside a character, so bytes wait until their character is whole
(nanochat's UTF-8 hold-back). Text that could be the start of a stop string waits too, until it
either completes the stop (then it is dropped and the sequence ends) or cannot any more.
"""
import codecs


class TextStream:
    def __init__(self, tokenizer, stops=()):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""  # everything decoded so far
        self.sent = 0   # how much of it has gone out

    def push(self, token: int):
        """(text that may go out now, whether a stop string ended the sequence)."""
        self.text += self.utf8.decode(self.tokenizer.decode_bytes([token]))
        return self._release(final=False)

    def finish(self) -> str:
        """The rest, at the end of the sequence (a dangling partial character becomes U+FFFD)."""
        self.text += self.utf8.decode(b"", final=True)
        delta, _ = self._release(final=True)
        return delta

    def _release(self, final: bool):
        hits = [i for i in (self.text.find(s, self.sent) for s in self.stops) if i >= 0]
        if hits:
            cut = min(hits)
            delta = self.text[self.sent:cut]
            self.text, self.sent = self.text[:cut], cut
            return delta, True
        end = len(self.text) if final else len(self.text) - self._stop_prefix_length()
        end = max(end, self.sent)
        delta, self.sent = self.text[self.sent:end], end
        return delta, False

    def _stop_prefix_length(self) -> int:
        """The longest tail of the text that a stop string begins with (it must wait)."""
        longest = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.text) - self.sent), longest, -1):
                if self.text.endswith(stop[:n]):
                    longest = n
                    break
        return longest


def token_text(tokenizer, token: int) -> str:
    """A token as the OpenAI API names it: its text, or `bytes:\\xe2\\x80` when it is not whole UTF-8."""
    raw = tokenizer.decode_bytes([token])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


def token_bytes(tokenizer, token: int) -> list:
    return list(tokenizer.decode_bytes([token]))
