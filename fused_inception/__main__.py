"""Command line: `python -m fused_inception demo` (also installed as `fused-inception`)."""

import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"demo": "fuse the reference and torchvision GoogLeNets, check and time them against unfused PyTorch"}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: python -m fused_inception COMMAND [options]\n\ncommands:")
        for name, text in commands.items():
            print(f"  {name:<8} {text}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    from . import demo

    return demo.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
