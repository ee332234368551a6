"""Chat: talking to a model trained on conversations, tools it calls while it writes, and evals.

The conversation format, its rendering with a loss mask and the chat Dataset live below the trainer
(nanostack/data/chat_format.py, conversations.py); fine-tuning from a base run is the trainer's
--init (train/init_from.py). This layer has what comes after training:

    template.py     the chat template other layers call (has_chat_template, render_for_reply, stop_token_id)
    generate.py     generation with tools: calls run, their outputs forced into the stream
    tools.py        the Tool interface and registry; calculator.py, the built-in tool
    terminal.py     `nanostack chat RUN`
    arithmetic.py   the arithmetic word-problem task; task_files.py writes tasks (`nanostack task`)
    tasks.py        eval task files (JSONL schema) and the shipped tasks (tasks/*.jsonl)
    evals.py        `nanostack eval RUN --task TASK`; stats.py its intervals, centred accuracy, pass@k
    show.py         `nanostack tokenizer show --chat FILE`: which tokens are trained
"""
