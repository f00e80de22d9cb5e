"""The ``minift`` command."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _assignments(args) -> int:
    from .assignments.build import all_regions, build_student_tree
    from .assignments.check import check
    from .assignments.tasks import TASKS

    root = Path(args.root).resolve()
    if args.action == "list":
        regions = all_regions(root)
        for t, desc in TASKS.items():
            where = sorted({f"{r.path.relative_to(root)}:{r.task_line}" for r in regions if r.task == t})
            print(f"{t:34} {desc}\n{'':34} regions: {', '.join(where) or 'none'}")
        return 0
    if args.action == "build":
        if not args.out:
            print("minift assignments build: --out DIR is required", file=sys.stderr)
            return 2
        stripped = build_student_tree(root, Path(args.out))
        print(f"wrote the student tree to {args.out}: {len(stripped)} solution regions stripped "
              f"({len({r.task for r in stripped})} tasks)")
        return 0
    return 0 if check(root) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="minift", description="minift: fine-tuning from scratch")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("assignments", help="coursework: list tasks, build the student tree, check the markers")
    a.add_argument("action", choices=["list", "build", "check"])
    a.add_argument("--out", help="with build: the directory to write the student tree to")
    a.add_argument("--root", default=".", help="the project tree (default: the current directory)")
    d = sub.add_parser("demo", help="train a small model end to end and write a loss curve")
    d.add_argument("--out", default="out/demo", help="where to write the loss curve and log")
    d.add_argument("--steps", type=int, default=1500)
    z = sub.add_parser("zoo", help="the pinned pretrained models and datasets")
    z.add_argument("action", choices=["list"])
    dl = sub.add_parser("download", help="fetch a zoo artifact (or all) into $MINIFT_HOME")
    dl.add_argument("name", help="an artifact name from `minift zoo list`, or all")
    dl.add_argument("--from", dest="source", help="a directory holding the pinned archive (no network)")
    g = sub.add_parser("generate", help="continue a prompt (or answer it, with --chat) with a model")
    g.add_argument("model", help="smollm2, or a checkpoint directory such as checkpoints/tiny-gpt")
    g.add_argument("prompt")
    g.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    g.add_argument("--max-new-tokens", type=int, default=48)
    g.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--seed", type=int, default=0)
    pt = sub.add_parser("pretrain", help="pretrain a tiny model from scratch on the zoo's text")
    pt.add_argument("--config", help="a JSON file of PretrainConfig options (flags override it)")
    from dataclasses import fields as _fields

    from .pretrain import PretrainConfig

    for f in _fields(PretrainConfig):
        pt.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                        type=(float if f.type in ("float", float) else int if f.type in ("int", int) else str))
    args = parser.parse_args(argv)
    if args.command == "generate":
        from . import models, tokenization
        from .backend import seed
        from .models.generation import generate_text

        seed(args.seed)
        model, tok = models.from_pretrained(args.model), tokenization.from_pretrained(args.model)
        print(generate_text(model, tok, args.prompt, max_new_tokens=args.max_new_tokens, chat=args.chat,
                            do_sample=args.sample, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p))
        return 0
    if args.command == "pretrain":
        from .pretrain import pretrain

        opts = {f.name: getattr(args, f.name) for f in _fields(PretrainConfig)}
        cfg = PretrainConfig.from_file(args.config, **opts) if args.config else PretrainConfig(
            **{k: v for k, v in opts.items() if v is not None})
        command = "minift pretrain " + " ".join(sys.argv[2:] if argv is None else argv[1:])
        pretrain(cfg, command=command.strip())
        return 0
    if args.command in ("zoo", "download"):
        from . import zoo

        if args.command == "zoo":
            for name, pin, cached, desc in zoo.list_artifacts():
                print(f"{name:8} {pin:28} {'cached' if cached else 'not cached':10} {desc}")
            return 0
        names = list(zoo.ARTIFACTS) if args.name == "all" else [args.name]
        try:
            for n in names:
                print(f"{n}: {zoo.fetch(n, source=args.source)}")
        except zoo.ZooError as e:
            print(f"minift download: {e}", file=sys.stderr)
            return 1
        return 0
    if args.command == "assignments":
        return _assignments(args)
    if args.command == "demo":
        from .demo import run_demo

        run_demo(out_dir=args.out, steps=args.steps)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
