"""`nanostack eval RUN --task TASK`: how often a model gets a task right, beyond its loss.

Generative items: the model writes an answer (a chat model replies, using its tools; a base model
continues the prompt, up to its first newline). The answer is right when, normalised (Unicode NFKC,
lower case, spaces collapsed, thousands separators and surrounding punctuation dropped), it equals one
of the item's accepted answers. With several samples per item (temperature > 0) it reports pass@k.

Multiple-choice items, in one of two forms:
- loss: each choice is scored as the continuation of the question: the mean NLL of its tokens after
  the question's. The lowest wins. Any model can be scored this way.
- letter: for chat models. The question and its lettered choices are the user's message; the letter
  whose token the model finds most likely as the first token of its reply wins.

Reports accuracy with its 95% interval, and accuracy centred on chance (stats.py).
"""
import time
import unicodedata

import regex
import torch

from nanostack.chat.generate import reply_tokens
from nanostack.chat.stats import centred, mean_interval, pass_at_k
from nanostack.chat.tasks import load_task, prompt_messages
from nanostack.chat.template import has_chat_template
from nanostack.data.chat_format import Message, render_prompt, reply_parts
from nanostack.errors import UserError
from nanostack.loss import token_nll
from nanostack.run import open_run
from nanostack.sample import check_sampling

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MC_FORMS = ("auto", "loss", "letter")
_SEPARATOR = regex.compile(r"(?<=\d),(?=\d{3}\b)")
_SPACES = regex.compile(r"\s+")
_EDGE_PUNCTUATION = " .,;:!?\"'`()[]{}"


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = _SEPARATOR.sub("", text)
    return _SPACES.sub(" ", text).strip(_EDGE_PUNCTUATION)


def is_right(prediction: str, answers) -> bool:
    return normalise(prediction) in {normalise(a) for a in answers}


def evaluate_task(run_dir, task: str, which="best", device="cpu", tools=None, samples=1, temperature=0.0,
                  top_k=None, top_p=None, limit=None, mc_form="auto", seed=1337, max_new_tokens=256,
                  progress=None) -> dict:
    """Score a run on a task (a shipped name or a .jsonl path); see evaluate_model for the result."""
    run = open_run(run_dir)
    return evaluate_model(run.load_model(which, device), run.tokenizer(), load_task(task, limit), tools or {},
                          samples, temperature, top_k, top_p, mc_form, seed, max_new_tokens, progress)


def evaluate_model(model, tokenizer, task, tools: dict, samples=1, temperature=0.0, top_k=None, top_p=None,
                   mc_form="auto", seed=1337, max_new_tokens=256, progress=None) -> dict:
    """{"task", "kind", "items", "accuracy", "interval", "chance", "centred", "centred_interval", ...}."""
    t0 = time.perf_counter()
    model.eval()
    items = [item for item in task.items if encodable(tokenizer, item)]
    if not items:
        raise UserError(f"no item of task {task.name} can be encoded by this run's tokenizer (characters it lacks)",
                        "evaluate a run whose tokenizer covers the task's text (a BPE run covers any text)")
    if task.kind == "choice":
        form = _choice_form(tokenizer, mc_form)
        scores, chance = choice_scores(model, tokenizer, items, form, progress), \
            sum(1 / len(i.choices) for i in items) / len(items)
        extra = {"form": form}
        per_item = [float(s) for s in scores]
    else:
        if samples < 1:
            raise UserError(f"--samples must be at least 1, got {samples}", "use 1 for one greedy answer per item")
        if samples > 1 and temperature == 0:
            raise UserError("several samples per item need sampling", "give --temperature above 0 with --samples")
        check_sampling(temperature, top_k, top_p)
        correct = generative_correct(model, tokenizer, items, tools, samples, temperature, top_k, top_p, seed,
                                     max_new_tokens, progress)
        per_item = [pass_at_k(samples, c, 1) for c in correct]
        chance = 0.0
        ks = sorted({1, samples})
        extra = {"samples": samples, "tools": sorted(tools) if has_chat_template(tokenizer) else [],
                 "pass_at_k": {str(k): sum(pass_at_k(samples, c, k) for c in correct) / len(correct) for k in ks}}
    accuracy, low, high = mean_interval(per_item)
    return {"task": task.name, "kind": task.kind, "items": len(items), "skipped": len(task.items) - len(items),
            "accuracy": accuracy,
            "interval": [low, high], "chance": chance, "centred": centred(accuracy, chance),
            "centred_interval": [centred(low, chance), centred(high, chance)], **extra,
            "seconds": time.perf_counter() - t0}


def encodable(tokenizer, item) -> bool:
    """Whether the tokenizer can encode every text of the item (a char tokenizer lacks unseen characters)."""
    texts = [item.prompt, item.question, *item.choices] + [m.content for m in item.messages if m.role != "assistant"] \
        + [p.text for m in item.messages if m.role == "assistant" for p in m.content]
    try:
        for text in texts:
            tokenizer.encode_ordinary(text)
    except UserError:
        return False
    return True


def _choice_form(tokenizer, mc_form: str) -> str:
    if mc_form not in MC_FORMS:
        raise UserError(f"unknown multiple-choice form {mc_form!r}", f"use {', '.join(MC_FORMS)}")
    if mc_form == "auto":
        return "letter" if has_chat_template(tokenizer) else "loss"
    if mc_form == "letter" and not has_chat_template(tokenizer):
        raise UserError("the letter form asks a chat model, and this run's tokenizer has no chat template",
                        "use --mc-form loss")
    return mc_form


# ---- generative -----------------------------------------------------------------------------------
def generative_correct(model, tokenizer, items, tools, samples, temperature, top_k, top_p, seed, max_new_tokens,
                       progress=None) -> list:
    """How many of each item's samples are right."""
    chat = has_chat_template(tokenizer)
    if not chat and any(item.messages for item in items):
        raise UserError("this task's items are conversations, and the run's tokenizer has no chat template",
                        "evaluate a chat run (trained with --examples chat), or give prompt items")
    generator = torch.Generator().manual_seed(seed)
    newline_ids = () if chat else [i for i in range(tokenizer.ordinary_vocab_size)
                                   if b"\n" in tokenizer.decode_bytes([i])]  # a base run's answer ends its line
    out = []
    for n, item in enumerate(items):
        if chat:
            prompt = render_prompt(tokenizer, prompt_messages(item))
            rows = reply_tokens(model, prompt, tokenizer, tools, max_new_tokens, num_samples=samples,
                                temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
            predictions = [reply_text(tokenizer, [t.id for t in row]) for row in rows]
        else:
            prompt = tokenizer.encode_ordinary(item.prompt)
            rows = reply_tokens(model, prompt, tokenizer, {}, max_new_tokens, num_samples=samples,
                                temperature=temperature, top_k=top_k, top_p=top_p, generator=generator,
                                stop_ids=newline_ids)
            predictions = [tokenizer.decode([t.id for t in row]).split("\n")[0] for row in rows]
        out.append(sum(is_right(p, item.answers) for p in predictions))
        if progress:
            progress(n + 1, len(items))
    return out


def reply_text(tokenizer, ids) -> str:
    """The text a reply says (its tool calls and outputs left out)."""
    return "".join(p.text for p in reply_parts(tokenizer, ids) if p.type == "text")


# ---- multiple choice ------------------------------------------------------------------------------
def choice_scores(model, tokenizer, items, form: str, progress=None) -> list:
    """1 or 0 per item: whether the model's pick is the right choice."""
    out = []
    for n, item in enumerate(items):
        if form == "loss":
            pick = min(range(len(item.choices)), key=continuation_losses(model, tokenizer, item).__getitem__)
        else:
            pick = letter_pick(model, tokenizer, item)
        out.append(int(pick == item.answer))
        if progress:
            progress(n + 1, len(items))
    return out


def continuation_losses(model, tokenizer, item) -> list:
    """The mean NLL per token of each choice's tokens as the continuation of the question's. A pair longer
    than the model's context keeps its last block_size + 1 tokens."""
    block = model.config.block_size
    question = tokenizer.encode_ordinary(item.question)
    rows = []
    for choice in item.choices:
        ids = question + tokenizer.encode_ordinary(choice)
        first = len(question)  # ids[first:] are the choice's
        cut = max(0, len(ids) - (block + 1))
        rows.append((ids[cut:], max(first - cut, 1)))
    width = max(len(ids) for ids, _ in rows) - 1
    x = torch.zeros((len(rows), width), dtype=torch.long)
    y = torch.full((len(rows), width), -1, dtype=torch.long)
    for r, (ids, first) in enumerate(rows):
        x[r, :len(ids) - 1] = torch.tensor(ids[:-1])
        y[r, first - 1:len(ids) - 1] = torch.tensor(ids[first:])
    device = next(iter(model.parameters())).device if isinstance(model, torch.nn.Module) else "cpu"
    nll = token_nll(model, x.to(device), y.to(device)).double().cpu()
    counts = (y != -1).sum(1).clamp(min=1)
    return (nll.sum(1) / counts).tolist()


def letter_prompt(item) -> str:
    lines = [item.question, *(f"{LETTERS[i]}. {c.strip()}" for i, c in enumerate(item.choices)),
             "Answer with the letter of the right choice."]
    return "\n".join(lines)


def letter_pick(model, tokenizer, item) -> int:
    """The choice whose letter is the most likely first token of the reply."""
    if len(item.choices) > len(LETTERS):
        raise UserError(f"item {item.id} has {len(item.choices)} choices; the letter form has {len(LETTERS)} letters",
                        "use --mc-form loss")
    letter_ids = []
    for letter in LETTERS[:len(item.choices)]:
        ids = tokenizer.encode_ordinary(letter)
        if len(ids) != 1:
            raise UserError(f"the letter {letter} is {len(ids)} tokens for this tokenizer", "use --mc-form loss")
        letter_ids.append(ids[0])
    prompt = render_prompt(tokenizer, (Message("user", letter_prompt(item)),))
    prompt = prompt[-model.config.block_size:]
    device = next(iter(model.parameters())).device if isinstance(model, torch.nn.Module) else "cpu"
    with torch.inference_mode():
        logits, _ = model(torch.tensor([prompt], device=device))
    return int(logits[0, -1, letter_ids].argmax())




def format_task_result(r: dict) -> str:
    """The result as lines a person reads."""
    low, high = r["interval"]
    lines = [f"{r['task']}: accuracy {r['accuracy']:.4f} (95% interval {low:.4f} - {high:.4f}) over {r['items']} "
             f"{'multiple-choice' if r['kind'] == 'choice' else 'generative'} item(s)"]
    c_low, c_high = r["centred_interval"]
    lines.append(f"centred on chance ({r['chance']:.4f}): {r['centred']:.4f} ({c_low:.4f} - {c_high:.4f})")
    if r["kind"] == "choice":
        lines.append(f"form: {r['form']}")
    else:
        passes = ", ".join(f"pass@{k} {v:.4f}" for k, v in r["pass_at_k"].items())
        lines.append(f"{passes}; {r['samples']} sample(s) per item; tools: {', '.join(r['tools']) or 'none'}")
    if r.get("skipped"):
        lines.append(f"{r['skipped']} item(s) skipped: they hold characters this run's tokenizer lacks")
    lines.append(f"{r['seconds']:.1f}s")
    return "\n".join(lines)
