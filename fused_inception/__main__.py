"""Command line: `python -m fused_inception COMMAND` (also installed as `fused-inception`)."""

import importlib
import sys

#: command -> (module that implements it, one-line description)
COMMANDS = {
    "demo": ("demo", "fuse the reference and torchvision GoogLeNets, check and time them against unfused PyTorch"),
    "bench": ("bench.cli", "benchmark fused vs eager, CUDA graph and torch.compile; JSON, table and plots"),
    "report": ("bench.report", "turn a saved benchmark JSON into the markdown table and plots"),
    "plan": ("plan", "what the fused kernel will do per block, batch and dtype, and its modeled H100 cost"),
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python -m fused_inception COMMAND [options]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<8} {text}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(f".{COMMANDS[argv[0]][0]}", __package__)
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
