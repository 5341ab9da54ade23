"""CI guard: a CPU environment must hold neither torchvision nor any nvidia-* package.

PyPI ships torchvision only as a CUDA build; on a CPU torch it breaks `import lightning` and
`import torchmetrics` ("operator torchvision::nms does not exist"), and nvidia-* wheels mean an unpinned
resolver swapped the CPU torch for a multi-GB CUDA one. Exit 1 (naming the packages) if either appears.
"""

from __future__ import annotations

import sys
from importlib import metadata


def offending_packages() -> list[str]:
    names = sorted({(d.metadata["Name"] or "").lower() for d in metadata.distributions()})
    return [n for n in names if n == "torchvision" or n.startswith("nvidia-")]


def has_cuda() -> bool:
    import torch

    return torch.version.cuda is not None and torch.cuda.is_available()


def main() -> int:
    if has_cuda():
        print("check_env: CUDA machine, torchvision/nvidia packages allowed")
        return 0
    bad = offending_packages()
    if bad:
        print(f"check_env: CPU environment holds {', '.join(bad)}; remove them "
              f"(pip uninstall -y {' '.join(bad)}) and reinstall with `-c constraints.txt`", file=sys.stderr)
        return 1
    print("check_env: ok (CPU torch, no torchvision, no nvidia-* packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
