"""WebDataset shards against the folder they were packed from: the same accuracy, and memory that stays flat.

1. Packs the data folder's ``train/`` and ``test/`` (Flowers-17) into tar shards outside the repository
   (``OUT/flowers/train-NNNNNN.tar``, ``test-...``; ``CLASS/NAME.jpg`` + ``CLASS/NAME.cls``), with
   webdataset's ``ShardWriter``, in a shuffled order (the index, not the packing, orders samples).
2. Runs ``transferlab probe`` on the folder and on the shards (same seed, ``--per-class``, cache off), then
   ``transferlab finetune --recipe fast`` on both, and prints each pair's accuracies and training-image counts:
   they should be equal.
3. Packs the training images again, repeated under new keys, into ~1,000 and ~10,000-sample shard sets
   and extracts every image of each with the feature cache off, each in its own process under
   ``/usr/bin/time -v``; prints the maximum resident set size, and that less the returned feature
   matrix (which must grow with the images: images x dimension x 4 bytes). The rest should be flat.

Usage: ``.venv/bin/python bench/shards.py [--data ../shared/datasets/flowers17] [--out /tmp/shards]
[--backbone efficientnet_lite0] [--memory-backbone test_efficientnet] [--counts 1000,10000]
[--finetune-recipe fast|default|best|'']``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

MB = 1024**2


def pack(folder: Path, out: Path, splits=("train", "test"), repeat_to: int | None = None, per_shard: int = 250) -> int:
    """The folder's images as tar shards in ``out``; with ``repeat_to``, the train images repeated (new keys) until
    there are that many samples. Returns the sample count."""
    import webdataset as wds

    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.tar"):
        old.unlink()
    written = 0
    for split in splits:
        files = sorted(p for p in (folder / split).rglob("*") if p.is_file() and not p.name.startswith("."))
        random.Random(0).shuffle(files)
        total = repeat_to or len(files)
        with wds.ShardWriter(str(out / f"{split}-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
            for i in range(total):
                path = files[i % len(files)]
                relative = path.relative_to(folder / split)
                key = relative.with_suffix("").as_posix()
                if repeat_to:
                    key = f"copy{i // len(files):03d}/{key}"
                sink.write({"__key__": key, path.suffix[1:]: path.read_bytes(), "cls": relative.parts[0]})
                written += 1
    return written


def transferlab(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "transferlab", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def probe(data: str, args) -> dict:
    done = transferlab("probe", "--data", data, "--backbone", args.backbone, "--per-class", str(args.per_class),
                       "--seed", str(args.seed), "--no-cache", "--json", "--predictions")
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout)


def finetune(data: str, output: Path, args) -> dict:
    done = transferlab("finetune", "--data", data, "--backbone", args.backbone, "--per-class", str(args.per_class),
                       "--seed", str(args.seed), "--recipe", args.finetune_recipe, "--output", str(output), "--json")
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout)


def compare(title: str, on_folder: dict, on_shards: dict) -> None:
    print(title)
    for name, r in (("folder", on_folder), ("shards", on_shards)):
        print(f"  {name:7s} accuracy {r['accuracy']:.4f}  train {r['train_images']}  test {r['test_images']}")
    same = [p["predicted"] for p in on_folder.get("predictions", [])] == \
           [p["predicted"] for p in on_shards.get("predictions", [])]
    print(f"  same accuracy: {on_folder['accuracy'] == on_shards['accuracy']}" + ("" if same else " (predictions differ)"))


def extract_child(spec: str, backbone: str) -> None:
    """In a child process: extract every image of ``spec`` (cache off); print the features' size as JSON."""
    from transferlab.backbones import load_backbone
    from transferlab.data import load_dataset
    from transferlab.features import FeatureExtractor

    splits = load_dataset(spec, ratios=(1.0, 0.0, 1e-9), seed=0)
    samples = splits.train + splits.test
    random_init = backbone.startswith("test_")
    extractor = FeatureExtractor(load_backbone(backbone, random_init=random_init, image_size=64 if random_init
                                               else None), cache=False, batch_size=64)
    found = extractor.extract([s.path for s in samples])
    print(json.dumps({"images": len(found.kept), "features_bytes": int(found.features.nbytes),
                      "seconds": found.seconds}))


def measure(spec: str, backbone: str) -> dict:
    command = ["/usr/bin/time", "-v", sys.executable, __file__, "--extract-child", spec, "--memory-backbone", backbone]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["peak_bytes"] = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1)) * 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/datasets/flowers17")
    parser.add_argument("--out", default="/tmp/shards")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--memory-backbone", default="test_efficientnet")
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--counts", default="1000,10000")
    parser.add_argument("--skip-probe", action="store_true")
    parser.add_argument("--finetune-recipe", default="fast", help="also fine-tune on both with this recipe ('' to skip)")
    parser.add_argument("--extract-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.extract_child:
        return extract_child(args.extract_child, args.memory_backbone)
    folder, out = Path(args.data).resolve(), Path(args.out)
    started = time.perf_counter()
    count = pack(folder, out / "flowers")
    print(f"packed {count} images of {folder} into {len(list((out / 'flowers').glob('*.tar')))} shards in "
          f"{out / 'flowers'} ({time.perf_counter() - started:.1f} s)")
    if not args.skip_probe:
        compare(f"probe {args.backbone} --per-class {args.per_class} --seed {args.seed}:", probe(str(folder), args),
                probe(str(out / "flowers"), args))
    if args.finetune_recipe:
        models = out / "models"
        shutil.rmtree(models, ignore_errors=True)  # this script's own earlier models
        compare(f"finetune {args.backbone} --recipe {args.finetune_recipe} --per-class {args.per_class} --seed "
                f"{args.seed}:", finetune(str(folder), models / "folder", args),
                finetune(str(out / "flowers"), models / "shards", args))
    print(f"peak memory of extraction ({args.memory_backbone}, cache off), each in its own process:")
    for target in (int(c) for c in args.counts.split(",")):
        sized = out / f"repeat-{target}"
        pack(folder, sized, splits=("train",), repeat_to=target)
        r = measure(str(sized), args.memory_backbone)
        rest = r["peak_bytes"] - r["features_bytes"]
        print(f"  {r['images']:>6} images: max RSS {r['peak_bytes'] / MB:7.0f} MB, features {r['features_bytes'] / MB:5.1f} MB, "
              f"RSS less features {rest / MB:7.0f} MB, {r['seconds']:.0f} s")


if __name__ == "__main__":
    main()
