"""Interop: GPT weights in and out of the formats the field already uses.

- hf.py: a Hugging Face GPT-2 checkpoint folder (`save_pretrained`: config.json and safetensors) ->
  a run folder (`nanostack import hf`), and a run -> such a folder (`nanostack export hf`) that
  `GPT2LMHeadModel.from_pretrained` loads. transformers itself is not needed for either.
- nanogpt.py: a nanoGPT `ckpt.pt` (read with torch.load(weights_only=True)) -> a run folder.
- imported.py: what an imported run folder holds (a model, a tokenizer, best/, and where it came
  from; no data and no optimizer state: it samples, evaluates on a text you name, serves, and is
  fine-tuned with `nanostack train --init RUN`).
- layout.py: GPT-2's tensor names and its Conv1D (in, out) weights, against nanostack's GPT.
Above the run folder (it writes runs), beside train; knows nothing of training.
"""
