"""Command line: parse arguments, call the library, turn a UserError into one line and exit code 2."""
import argparse
import sys
from dataclasses import fields

from nanostack import __version__
from nanostack.errors import Interrupted, UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UserError(f"{self.prog}: {message}", f"see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    from nanostack.data.sources import BUILTINS
    from nanostack.run.config import TrainConfig, preset_names

    parser = Parser(prog="nanostack", description="Train small language models on your own text, from scratch.")
    parser.add_argument("--version", action="version", version=f"nanostack {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    p = sub.add_parser("prepare", help="tokenize a corpus into cached train/val shards",
                       description="Read a corpus, split it 90/10 into train and val, tokenize it and cache the "
                                   "token shards (reused by every run on the same data).")
    p.add_argument("--data", default="pystdlib",
                   help=f"a text file, a folder of text files, or a built-in corpus: {', '.join(BUILTINS)} "
                        "(default: pystdlib)")
    p.add_argument("--tokenizer", default="char",
                   help="tokenizer to prepare the shards with: char, bpe:VOCAB_SIZE, gpt2 or a tokenizer .json "
                        "file (default: char)")

    t = sub.add_parser("train", help="train a model (a GPT, or a makemore model) on a corpus",
                       description="Train a model (--model). Settings come from the defaults, then --config, then the "
                                   "flags "
                                   "below; the run folder keeps everything needed to resume and sample.")
    t.add_argument("--out", required=True, help="run folder for config, checkpoints and metrics")
    t.add_argument("--config", help=f"a preset name ({', '.join(preset_names())}) or a TOML file of settings")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    t.add_argument("--force", action="store_true", help="start over even if --out already holds a run")
    add_config_flags(t, TrainConfig)

    s = sub.add_parser("sample", help="generate text from a trained run",
                       description="Generate text from a run's checkpoint, streaming it to stdout.")
    s.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of `nanostack train`")
    s.add_argument("--prompt", default="", help="text to continue (default: start from a newline)")
    s.add_argument("--max-new-tokens", type=int, default=500, help="tokens to generate per sample (default: 500)")
    s.add_argument("--temperature", type=float, default=1.0,
                   help="below 1 is more conservative, above 1 more random, 0 is greedy (default: 1.0)")
    s.add_argument("--top-k", type=int, default=None, help="sample only from the k most likely tokens")
    s.add_argument("--top-p", type=float, default=None,
                   help="sample only from the most likely tokens whose probabilities sum to p (nucleus)")
    s.add_argument("--num-samples", type=int, default=None,
                   help="how many samples to generate (default: 1; 10 examples for a line-per-example run)")
    s.add_argument("--seed", type=int, default=1337, help="random seed for sampling (default: 1337)")
    s.add_argument("--checkpoint", choices=("best", "latest"), default="best",
                   help="which checkpoint to load (default: best, the lowest val loss)")
    s.add_argument("--device", default="auto",
                   help="device to sample on: auto, cpu, cuda, cuda:N or mps (default: auto, as train); with "
                        "--backend auto a small GPT-2-style model decodes on the CPU")
    s.add_argument("--backend", choices=("auto", "torch", "numpy"), default="auto",
                   help="engine to sample with: torch, or numpy (nanostack.grad, CPU only); either loads a "
                        "checkpoint trained on either. auto (the default): a text stream from a small GPT-2-style "
                        "model is decoded in plain numpy on the CPU (the same tokens as torch, started without "
                        "torch); everything else with torch")
    e = sub.add_parser("eval", help="the exact loss of a run on its held-out data",
                       description="Evaluate a run on the data it trained on (checked unchanged, with the run's own "
                                   "tokenizer): the mean NLL per token over every held-out example (every window of a "
                                   "stream), with how many held-out examples also occur in train.")
    e.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of `nanostack train`")
    e.add_argument("--checkpoint", choices=("best", "latest"), default="best", help="which checkpoint (default: best)")
    e.add_argument("--splits", default=None, metavar="SPLITS",
                   help="comma-separated splits to score: train, and val/test (the held-out split; the default)")
    e.add_argument("--per-example", metavar="PATH",
                   help="write every scored example's NLL to this TSV (split, id, source, offset, text), hardest first")
    e.add_argument("--device", default="auto", help="device to evaluate on: auto, cpu, cuda, cuda:N or mps")
    e.add_argument("--data", default=None, metavar="DATA",
                   help="score the run on this corpus, text file or folder instead of its own data (cut as its data "
                        "was, with its tokenizer); an imported run has no data of its own and needs it")
    add_task_eval_arguments(e)
    add_tokenizer_commands(sub)
    add_serve_command(sub)
    from nanostack.dataengine.commands import add_commands as add_data_engine_commands

    add_data_engine_commands(sub, Parser)  # `nanostack data ...` and `nanostack engine ...`
    add_chat_commands(sub)
    add_interop_commands(sub)
    add_recipe_commands(sub, TrainConfig, preset_names())
    return parser


def add_serve_command(sub) -> None:
    v = sub.add_parser("serve", help="serve a run over HTTP: an OpenAI-compatible API and a web page",
                       description="Serve a run's model with an OpenAI-compatible API (/v1/completions, "
                                   "/v1/chat/completions), continuous batching, a web page (playground and dashboard), "
                                   "/health, /metrics and /llms.txt. Needs the extra: pip install 'nanostack[serve]'. "
                                   "The bearer token comes from $NANOSTACK_API_KEY or --api-key-file, never the "
                                   "command line.")
    v.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of `nanostack train`")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine "
                                                        "only; any other needs a token or --insecure-no-auth)")
    v.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    v.add_argument("--runs-root", help="folder of runs the dashboard shows (default: RUN_DIR's parent)")
    v.add_argument("--checkpoint", choices=("best", "latest"), default="best", help="which checkpoint (default: best)")
    v.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    v.add_argument("--max-batch", type=int, help="rows decoded together, the KV cache's size (default: 32 on CPU, "
                                                 "256 on GPU)")
    v.add_argument("--max-queue", type=int, default=256, help="requests waiting for a row before 503 (default: 256)")
    v.add_argument("--prefill-budget", type=int, help="prompt tokens admitted per step (default: 512 on CPU, 4096 "
                                                      "on GPU)")
    v.add_argument("--queue-timeout", type=float, default=30.0, help="seconds in the queue before 503 (default: 30)")
    v.add_argument("--request-timeout", type=float, default=300.0,
                   help="seconds of generation before a request ends with finish_reason length (default: 300)")
    v.add_argument("--max-tokens-limit", type=int, default=2048, help="largest max_tokens a request may ask for "
                                                                      "(default: 2048)")
    v.add_argument("--max-prompt-tokens", type=int, default=8192, help="longest prompt in tokens (default: 8192)")
    v.add_argument("--api-key-file", help="file holding the bearer token (else $NANOSTACK_API_KEY)")
    v.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="another Host header to answer (besides localhost, 127.0.0.1, [::1]); repeatable")
    v.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="an exact origin (scheme://host:port) whose pages may call the API; repeatable; no '*'")
    v.add_argument("--insecure-no-auth", action="store_true", help="allow a non-loopback --host without a token")
    v.add_argument("--log-requests", action="store_true", help="log each request with its prompt (off: prompts are "
                                                               "never logged)")
    v.add_argument("--telemetry", metavar="DIR", help="append every request's prompt, completion and prompt loss to "
                                                      "DIR/telemetry-*.parquet for the data engine (off by default)")


def run_serve(args) -> None:
    from nanostack.serve.server import require_extra

    require_extra()
    from nanostack.serve.schemas import Limits
    from nanostack.serve.server import serve_run
    from nanostack.serve.settings import ServeSettings, read_api_key

    settings = ServeSettings(
        host=args.host, port=args.port, runs_root=args.runs_root, device=args.device, checkpoint=args.checkpoint,
        max_batch=args.max_batch, max_queue=args.max_queue, prefill_budget=args.prefill_budget,
        queue_timeout=args.queue_timeout, request_timeout=args.request_timeout,
        limits=Limits(max_tokens=args.max_tokens_limit, max_prompt_tokens=args.max_prompt_tokens),
        api_key=read_api_key(args.api_key_file), allowed_hosts=tuple(args.allowed_host),
        cors_origins=tuple(args.cors_origin), insecure_no_auth=args.insecure_no_auth, log_requests=args.log_requests,
        telemetry=args.telemetry)
    serve_run(args.run_dir, settings)


def add_interop_commands(sub) -> None:
    i = sub.add_parser("import", help="make a run folder of a Hugging Face GPT-2 or a nanoGPT checkpoint",
                       description="Turn another project's GPT checkpoint into a run folder that samples, evaluates "
                                   "(with --data), serves and fine-tunes (train --init RUN).")
    formats = i.add_subparsers(dest="format", required=True, parser_class=Parser, metavar="FORMAT")
    hf = formats.add_parser("hf", help="a Hugging Face GPT-2 folder (save_pretrained: config.json, safetensors)",
                            description="Import a local Hugging Face GPT-2 checkpoint folder (nothing is downloaded).")
    hf.add_argument("source", metavar="DIR", help="the folder save_pretrained wrote")
    ng = formats.add_parser("nanogpt", help="a nanoGPT ckpt.pt (read with torch.load(weights_only=True))",
                            description="Import the ckpt.pt that nanoGPT's train.py writes.")
    ng.add_argument("source", metavar="CKPT", help="nanoGPT's ckpt.pt")
    for p in (hf, ng):
        p.add_argument("--out", required=True, help="the run folder to create")
        p.add_argument("--tokenizer", default=None,
                       help="what the model's token ids mean: gpt2, a tokenizer .json file, a run folder, or (nanoGPT) "
                            "the meta.pkl of its data folder (default: gpt2 for GPT-2's vocabulary)")
    x = sub.add_parser("export", help="write a run as a Hugging Face GPT-2 folder",
                       description="Export a run's checkpoint as a folder GPT2LMHeadModel.from_pretrained loads.")
    targets = x.add_subparsers(dest="format", required=True, parser_class=Parser, metavar="FORMAT")
    xh = targets.add_parser("hf", help="a Hugging Face GPT-2 folder (config.json, model.safetensors)",
                            description="Write the run's model as a Hugging Face GPT-2 folder.")
    xh.add_argument("run_dir", metavar="RUN", help="the run folder")
    xh.add_argument("--out", required=True, help="the folder to create")
    xh.add_argument("--checkpoint", choices=("best", "latest"), default="best", help="which checkpoint (default: best)")
def add_task_eval_arguments(e) -> None:
    e.add_argument("--task", help="score the run on a task instead of its loss: a shipped task (arithmetic, "
                                  "code_lines) or a .jsonl task file (schema in the README's chat section)")
    e.add_argument("--tools", default=None, help="task: tools a chat model may call, comma-separated, or none "
                                                 "(default: calculator)")
    e.add_argument("--samples", type=int, default=1, help="task: answers sampled per generative item; pass@k is "
                                                          "reported for k = 1 and this (default: 1, greedy)")
    e.add_argument("--temperature", type=float, default=None,
                   help="task: sampling temperature (default: 0, greedy, for one sample; 0.8 for several)")
    e.add_argument("--top-k", type=int, default=None, help="task: sample only from the k most likely tokens")
    e.add_argument("--limit", type=int, default=None, help="task: score only its first N items")
    e.add_argument("--mc-form", default="auto", choices=("auto", "loss", "letter"),
                   help="task: multiple choice by the lowest mean continuation loss, or by the letter a chat model "
                        "answers (default: auto, letter for chat runs)")
    e.add_argument("--max-new-tokens", type=int, default=256, help="task: the longest answer (default: 256)")
    e.add_argument("--seed", type=int, default=1337, help="task: random seed for sampling (default: 1337)")


def add_chat_commands(sub) -> None:
    c = sub.add_parser("chat", help="talk to a chat run in the terminal",
                       description="An interactive chat with a run trained on conversations (--examples chat): "
                                   "replies stream as they are written, tool calls and their outputs are shown. "
                                   "/reset forgets the history, /quit or Ctrl-D ends.")
    c.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of a chat run")
    c.add_argument("--tools", default=None, help="tools the model may call, comma-separated, or none "
                                                 "(default: calculator)")
    c.add_argument("--system", default="", help="a system message that starts the conversation")
    c.add_argument("--max-new-tokens", type=int, default=256, help="the longest reply in tokens (default: 256)")
    c.add_argument("--temperature", type=float, default=0.8, help="0 is greedy (default: 0.8)")
    c.add_argument("--top-k", type=int, default=None, help="sample only from the k most likely tokens")
    c.add_argument("--top-p", type=float, default=None, help="sample from the smallest set of tokens holding p")
    c.add_argument("--seed", type=int, default=1337, help="random seed for sampling (default: 1337)")
    c.add_argument("--checkpoint", choices=("best", "latest"), default="best", help="which checkpoint (default: best)")
    c.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    w = sub.add_parser("task", help="write a task's items, or training conversations, as JSONL",
                       description="Write the arithmetic word problems (conversations with calculator calls; "
                                   "--split train to fine-tune on, test to evaluate) or the code_lines multiple-choice "
                                   "task as a JSONL file.")
    w.add_argument("name", metavar="NAME", help="arithmetic or code_lines")
    w.add_argument("--out", required=True, help="the .jsonl file to write")
    w.add_argument("--split", default="test", help="train or test (default: test)")
    w.add_argument("--count", type=int, default=500, help="how many items (default: 500)")
    w.add_argument("--force", action="store_true", help="replace --out if it exists")


def add_config_flags(parser, config_class) -> None:
    """One --flag per TrainConfig field (what a command line may override)."""
    from nanostack.run.config import SWITCHED

    for f in fields(config_class):
        flag = "--" + f.name.replace("_", "-")
        if f.name in SWITCHED:  # auto, true or false; a bare --compile means true, --no-compile false
            parser.add_argument(flag, dest=f.name, nargs="?", const="true", metavar="auto|true|false",
                                default=argparse.SUPPRESS, help=f"{f.metadata['help']} (default: {f.default})")
            parser.add_argument("--no-" + flag[2:], dest=f.name, action="store_const", const="false",
                                default=argparse.SUPPRESS, help=f"the same as {flag} false")
        elif isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=f"{f.metadata['help']} (default: {f.default})")
        else:
            parser.add_argument(flag, dest=f.name, metavar=type(f.default).__name__.upper(),
                                default=argparse.SUPPRESS, help=f"{f.metadata['help']} (default: {f.default})")


def add_recipe_commands(sub, config_class, presets) -> None:
    d = sub.add_parser(
        "doctor", help="check a model, its data and its training before (or after) you train",
        description="Karpathy's recipe for training neural networks as checks: the first batch, the loss at init, "
                    "saturated, dead or shrinking layers, causality, overfitting one batch, an input-independent "
                    "baseline, an lr range test, update ratios, determinism and the run's health. Each line reads "
                    "PASS|WARN|FAIL|SKIP id  measured (want threshold) -> what to do. Give a RUN_DIR (init checks "
                    "from its config, plus its metrics and probes; the report goes to RUN_DIR/doctor/doctor.html), "
                    "or a config before training: --data, --config and any train flag. Exit 0 if nothing FAILs, "
                    "1 on a FAIL (on a WARN too with --strict), 2 on a usage error. A preset's [doctor.CHECK] table "
                    "overrides thresholds.")
    d.add_argument("run_dir", metavar="RUN_DIR", nargs="?", help="a run folder of `nanostack train` (optional)")
    d.add_argument("--config", help=f"a preset name ({', '.join(presets)}) or a TOML file: the settings to check "
                                    "(with no RUN_DIR), and its [doctor] thresholds")
    d.add_argument("--out", help="with no RUN_DIR: write the report to OUT/doctor/ (default: no report)")
    d.add_argument("--only", metavar="IDS", help="run only these checks (comma-separated ids)")
    d.add_argument("--skip", metavar="IDS", help="skip these checks (comma-separated ids)")
    d.add_argument("--quick", action="store_true", help="skip the checks that need training steps (a few seconds)")
    d.add_argument("--strict", action="store_true", help="exit 1 on a WARN too")
    d.add_argument("--json", action="store_true", help="print the results as one JSON object")
    d.add_argument("--no-plots", action="store_true", help="write the report without pictures")
    d.add_argument("--tensorboard", metavar="DIR",
                   help="also export the run's metrics and probes as TensorBoard event files to DIR/nanostack "
                        "(needs the tensorboard package: pip install 'nanostack[tensorboard]')")
    add_config_flags(d, config_class)
    r = sub.add_parser("report", help="redraw a run's doctor report from its files",
                       description="Redraw RUN_DIR/doctor/doctor.html (plots, tables) and report.json from the run's "
                                   "metrics, probes and the last doctor's results, without loading a model. Without "
                                   "matplotlib the report has its tables and says how to get the plots.")
    r.add_argument("run_dir", metavar="RUN_DIR", help="a run folder of `nanostack train`")
    r.add_argument("--no-plots", action="store_true", help="write the report without pictures")
    r.add_argument("--tensorboard", metavar="DIR",
                   help="also export the run's metrics and probes as TensorBoard event files to DIR/nanostack")


def add_tokenizer_commands(sub) -> None:
    k = sub.add_parser("tokenizer", help="train, inspect and use BPE tokenizers",
                       description="Train a byte-level BPE tokenizer, encode and decode with one, measure it on a "
                                   "corpus, or show where it cuts a text. TOKENIZER is gpt2, a tokenizer .json file, "
                                   "or a run folder.")
    ks = k.add_subparsers(dest="action", required=True, parser_class=Parser, metavar="ACTION")
    tr = ks.add_parser("train", help="train a BPE tokenizer on a corpus's training split",
                       description="Train byte-level BPE on the training split of a corpus and save it as JSON.")
    tr.add_argument("--data", default="pystdlib", help="a built-in corpus, a text file or a folder (default: pystdlib)")
    tr.add_argument("--vocab-size", type=int, default=4096, help="tokens in all: 256 bytes + merges + specials "
                                                                 "(default: 4096)")
    tr.add_argument("--pattern", default="gpt4", help="split pattern: gpt4, gpt2, none, or a regex (default: gpt4)")
    tr.add_argument("--special", action="append", default=[], metavar="TOKEN",
                    help="a special token to register, e.g. '<|endoftext|>' (repeatable)")
    tr.add_argument("--out", required=True, help="the .json file to write")
    tr.add_argument("--force", action="store_true", help="replace --out if it exists")
    for name, helptext in (("encode", "print the token ids of a text"), ("show", "colour a text token by token"),
                           ("stats", "compression and token usage on a text or corpus")):
        c = ks.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        c.add_argument("text", nargs="?", help="the text (or use --file)")
        c.add_argument("--file", help="read the text from this file (- for standard input)")
        c.add_argument("--tokenizer", default="gpt2", help="gpt2, a tokenizer .json file or a run folder "
                                                           "(default: gpt2)")
    ks.choices["encode"].add_argument("--allowed-special", default="none_raise", choices=("none_raise", "none", "all"),
                                      help="special-token text: refuse it, encode it as text, or as special tokens")
    ks.choices["show"].add_argument("--html", metavar="PATH", help="also write the coloured text as a web page")
    ks.choices["show"].add_argument("--chat", metavar="FILE",
                                    help="show conversations of a .jsonl file as rendered for training: trained "
                                         "tokens in green, read-only ones in grey")
    ks.choices["show"].add_argument("--first", type=int, default=3, help="--chat: how many conversations (default: 3)")
    ks.choices["show"].add_argument("--color", choices=("auto", "always", "never"), default="auto",
                                    help="colour the tokens: on a terminal (auto), always, or never "
                                         "(tokens in [brackets]) (default: auto)")
    ks.choices["stats"].add_argument("--data", help="measure on this corpus instead (a built-in name, file or folder)")
    ks.choices["stats"].add_argument("--top", type=int, default=20, help="how many frequent tokens to list")
    d = ks.add_parser("decode", help="print the text of token ids", description="Print the text of token ids.")
    d.add_argument("ids", nargs="+", help="token ids")
    d.add_argument("--tokenizer", default="gpt2", help="gpt2, a tokenizer .json file or a run folder (default: gpt2)")


def run_tokenizer(args) -> None:
    from nanostack.tokenizer import commands

    if args.action == "train":
        from nanostack.data import load_corpus
        from nanostack.data.shards import split_corpus

        train_text, _ = split_corpus(load_corpus(args.data))
        commands.train(train_text, args.vocab_size, args.out, args.pattern, args.special, args.force)
    elif args.action == "decode":
        print(commands.decode(args.tokenizer, args.ids))
    elif args.action == "stats" and args.data:
        from nanostack.data import load_corpus

        text = "".join(text for _, text in load_corpus(args.data).documents)
        print(commands.stats(args.tokenizer, text, args.top))
    elif args.action == "show" and args.chat:
        from nanostack.chat.show import show_conversations
        from nanostack.tokenizer import open_tokenizer

        colour = args.color == "always" or args.color == "auto" and sys.stdout.isatty()
        sys.stdout.write(show_conversations(open_tokenizer(args.tokenizer), args.chat, colour, args.first))
    else:
        text = commands.read_input(args.text, args.file)
        if args.action == "encode":
            print(commands.encode(args.tokenizer, text, args.allowed_special))
        elif args.action == "stats":
            print(commands.stats(args.tokenizer, text, args.top))
        else:
            colour = args.color == "always" or args.color == "auto" and sys.stdout.isatty()
            sys.stdout.write(commands.show(args.tokenizer, text, args.html, colour=colour))


def run(argv) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "prepare":
        from nanostack.data import prepare_shards

        shards = prepare_shards(args.data, args.tokenizer)
        m = shards.meta
        print(f"shards: {shards.path}")
        print(f"source {m['source']}: {m['documents']} document(s), {m['characters']:,} characters, "
              f"{m['skipped_files']} file(s) skipped as binary or non-UTF-8")
        print(f"tokenizer {m['tokenizer']}: vocab {m['vocab_size']}; "
              f"train {m['train_tokens']:,} tokens, val {m['val_tokens']:,} tokens")
    elif args.command == "train":
        from nanostack.run.config import FIELDS
        from nanostack.train import train
        from nanostack.train.distributed import launched_rank

        overrides = {k: v for k, v in vars(args).items() if k in FIELDS}
        summary = train(args.out, overrides, args.config, resume=args.resume, force=args.force)
        if launched_rank() != 0:  # under torchrun, rank 0 speaks for all
            return 0
        best = f"; best val loss {summary['best_val_loss']:.4f}" if summary["best_val_loss"] is not None else ""
        val = f"; val loss {summary['val_loss']:.4f}" if summary["val_loss"] is not None else ""
        print(f"run at step {summary['step']}{val}{best}; {summary['elapsed_s']:.0f}s; "
              f"run folder {summary['run_dir']}")
        print(f"sample it with: nanostack sample {summary['run_dir']}")
    elif args.command == "tokenizer":
        run_tokenizer(args)
    elif args.command in ("data", "engine"):
        from nanostack.dataengine.commands import run as run_data_engine

        return run_data_engine(args)
    elif args.command == "doctor":
        from nanostack.recipe import commands
        from nanostack.run.config import FIELDS

        overrides = {k: v for k, v in vars(args).items() if k in FIELDS}
        return commands.doctor(args.run_dir, args.config, overrides, args.out, args.only, args.skip, args.quick,
                               args.strict, args.json, not args.no_plots, args.tensorboard)
    elif args.command == "report":
        from nanostack.recipe import commands

        return commands.report(args.run_dir, not args.no_plots, args.tensorboard)
    elif args.command == "sample":
        from nanostack.sample import sample_run

        if args.max_new_tokens < 0 or (args.num_samples is not None and args.num_samples < 1):
            raise UserError("--max-new-tokens must be >= 0 and --num-samples >= 1", "fix the numbers")
        if args.backend == "numpy" and args.device not in ("cpu", "auto"):
            raise UserError(f"the numpy backend samples on the CPU, not on {args.device}", "drop --device")
        sample_run(args.run_dir, args.prompt, args.max_new_tokens, args.num_samples, args.temperature, args.top_k,
                   args.top_p, args.seed, args.checkpoint, args.device, args.backend,
                   warn=lambda message: print(message, file=sys.stderr))
    elif args.command == "serve":
        run_serve(args)
    elif args.command == "eval" and args.task:
        if args.data:
            raise UserError("--data and --task ask for two different scores", "drop one of them")
        run_task_eval(args)
    elif args.command in ("chat", "task"):
        run_chat_command(args)
    elif args.command == "eval":
        from nanostack.evaluate import evaluate_run, parse_splits
        from nanostack.models.engines import resolve_device

        splits = parse_splits(args.splits) if args.splits else None
        result = evaluate_run(args.run_dir, args.checkpoint, args.per_example, splits, resolve_device(args.device),
                              args.data)
        print(format_eval(result))
    elif args.command == "import":
        from nanostack.interop import hf, nanogpt

        read = hf.import_hf if args.format == "hf" else nanogpt.import_nanogpt
        read(args.source, args.out, args.tokenizer)
    elif args.command == "export":
        from nanostack.interop import hf

        hf.export_hf(args.run_dir, args.out, args.checkpoint)
    return 0


def run_task_eval(args) -> None:
    from nanostack.chat.evals import evaluate_task, format_task_result
    from nanostack.chat.tools import parse_tools_option
    from nanostack.models.engines import resolve_device

    temperature = args.temperature if args.temperature is not None else (0.8 if args.samples > 1 else 0.0)
    result = evaluate_task(args.run_dir, args.task, args.checkpoint, resolve_device(args.device),
                           parse_tools_option(args.tools), args.samples, temperature, args.top_k, None, args.limit,
                           args.mc_form, args.seed, args.max_new_tokens)
    print(format_task_result(result))


def run_chat_command(args) -> None:
    if args.command == "task":
        from nanostack.chat.task_files import write_task

        n = write_task(args.name, args.out, args.split, args.count, args.force)
        print(f"wrote {n} {args.name} item(s) to {args.out}")
        return
    from nanostack.chat.terminal import chat
    from nanostack.chat.tools import parse_tools_option
    from nanostack.models.engines import resolve_device

    if args.max_new_tokens < 1:
        raise UserError("--max-new-tokens must be at least 1", "give the longest reply in tokens")
    chat(args.run_dir, args.checkpoint, resolve_device(args.device), parse_tools_option(args.tools), args.system,
         args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed)


def format_eval(result: dict) -> str:
    heldout = result["heldout"]
    lines = []
    for split in ("train", heldout):
        if f"{split}_nll" not in result:
            continue
        line = (f"{split} NLL per token: {result[f'{split}_nll']:.4f} over {result[f'{split}_examples']:,} {split} "
                f"{result['unit']} ({result[f'{split}_tokens']:,} tokens)")
        if split == heldout and result["heldout_in_train"] is not None:
            line += f"; {result['heldout_in_train']} of them also occur in train"
        lines.append(line)
    if result.get("per_example"):
        lines.append(f"per-example NLL written to {result['per_example']}")
    return "\n".join(lines)


def follower() -> bool:
    """A rank other than 0 of a torchrun launch."""
    import os

    return os.environ.get("RANK", "0") not in ("", "0")


def main(argv=None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UserError as e:
        if not (getattr(e, "everywhere", False) and follower()):  # every rank raised it: rank 0 says it
            print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Interrupted as e:
        if not follower():
            print(f"\ninterrupted at step {e.step}; checkpoint saved. Continue with: "
                  f"nanostack train --out {e.run_dir} --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `nanostack sample RUN | head`
        return 0
    except OSError as e:  # a full disk, a read-only folder, a path that is a file: one line, not a traceback
        from nanostack.io import describe_os_error

        print(f"error: {describe_os_error(e)}; free some space or fix the permissions, then run the command "
              "again (files written before are intact)", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
