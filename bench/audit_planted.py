"""Plant label issues and near-duplicates into a copy of Flowers-17's list, audit it, score the audit.

    python bench/audit_planted.py plant --data ../shared/datasets/flowers17 --out /tmp/audit-planted
    transferlab audit --data /tmp/audit-planted/list.csv --json > /tmp/audit-planted/audit.json
    python bench/audit_planted.py score --out /tmp/audit-planted

``plant`` writes (never into the repository) a list file of every image with ``flip`` of the training
labels changed to another class at random (seeded), and ``duplicates`` training images copied into the test
split after re-encoding at another JPEG quality, resizing to 90% and cropping 5% of each side, with their
true labels; ``truth.json`` records what was planted. ``score`` reads the audit's JSON: label-issue
precision and recall against the flipped images, duplicate recall against the planted pairs, and the
reported pairs that were not planted (see ``score``).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

from PIL import Image

SUFFIXES = (".jpg", ".jpeg", ".png")


def images_of(folder: Path) -> list[tuple[Path, str]]:
    return sorted((p, p.parent.name) for p in folder.glob("*/*") if p.suffix.lower() in SUFFIXES)


def near_copy(source: Path, target: Path, quality: int) -> None:
    """``source`` cropped 5% on each side, resized to 90%, saved as JPEG at ``quality``."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        w, h = image.size
        dx, dy = round(w * 0.05), round(h * 0.05)
        image = image.crop((dx, dy, w - dx, h - dy))
        image = image.resize((round(image.width * 0.9), round(image.height * 0.9)), Image.Resampling.BICUBIC)
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, "JPEG", quality=quality)


def plant(data: Path, out: Path, flip: float, duplicates: int, seed: int) -> None:
    rng = random.Random(seed)
    train, test = images_of(data / "train"), images_of(data / "test")
    classes = sorted({label for _, label in train})
    flipped = rng.sample(range(len(train)), round(flip * len(train)))
    rows = []
    for i, (path, label) in enumerate(train):
        if i in flipped:
            label = rng.choice([c for c in classes if c != label])
        rows.append((str(path.resolve()), label, "train"))
    rows += [(str(p.resolve()), label, "test") for p, label in test]
    pairs = []
    for n, i in enumerate(rng.sample([i for i in range(len(train)) if i not in flipped], duplicates)):
        path, label = train[i]
        copy = out / "copies" / f"copy_{n:02d}_{path.stem}.jpg"
        near_copy(path, copy, quality=rng.choice((60, 70, 85, 95)))
        rows.append((str(copy.resolve()), label, "test"))
        pairs.append([str(path.resolve()), str(copy.resolve())])
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "list.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("path", "label", "split"))
        writer.writerows(rows)
    truth = {"flipped": [str(train[i][0].resolve()) for i in sorted(flipped)], "duplicates": pairs, "seed": seed}
    (out / "truth.json").write_text(json.dumps(truth, indent=2))
    print(f"{out / 'list.csv'}: {len(rows)} images, {len(flipped)} training labels flipped, {duplicates} planted "
          "near-duplicates in test")


def score(out: Path) -> None:
    """Label-issue precision and recall; duplicate recall, and the reported pairs that were not planted,
    sorted into: identical pictures (pHash equal, cosine >= 0.99), a planted copy matched to an image its
    source is itself reported a duplicate of, and the rest (drawn side by side in ``unplanted.png`` to be
    judged by eye: Flowers-17 holds duplicates of its own)."""
    truth = json.loads((out / "truth.json").read_text())
    audit = json.loads((out / "audit.json").read_text())
    flipped = set(truth["flipped"])
    found = {row["path"] for row in audit["label_issues"]}
    hits = len(found & flipped)
    planted = {frozenset(pair) for pair in truth["duplicates"]}
    rows = {frozenset((row["first"], row["second"])): row for row in audit["duplicates"]}
    reported = set(rows)
    source_of = {copy: source for source, copy in truth["duplicates"]}
    unplanted = reported - planted
    identical = {p for p in unplanted if rows[p]["hash_distance"] == 0 and rows[p]["cosine"] >= 0.99}
    transitive = set()
    for pair in unplanted - identical:
        copies = [p for p in pair if p in source_of]
        if copies:
            other = next(iter(pair - {copies[0]}))
            if frozenset((source_of[copies[0]], other)) in reported:
                transitive.add(pair)
    rest = sorted((sorted(p) for p in unplanted - identical - transitive))
    figures = {
        "label_issue_precision": hits / len(found) if found else 0.0,
        "label_issue_recall": hits / len(flipped),
        "label_issues_reported": len(found),
        "duplicate_recall": len(planted & reported) / len(planted),
        "pairs_reported": len(reported),
        "unplanted_pairs": len(unplanted),
        "unplanted_identical_pictures": len(identical),
        "unplanted_via_a_duplicate_of_the_source": len(transitive),
        "unplanted_to_judge": rest,
    }
    contact_sheet(rest, out / "unplanted.png")
    print(json.dumps(figures, indent=2))


def contact_sheet(pairs: list[list[str]], target: Path, size: int = 160) -> None:
    sheet = Image.new("RGB", (2 * size, max(1, len(pairs)) * size), "white")
    for row, pair in enumerate(pairs):
        for column, path in enumerate(pair):
            with Image.open(path) as image:
                image = image.convert("RGB")
                image.thumbnail((size - 4, size - 4))
                sheet.paste(image, (column * size, row * size))
    sheet.save(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("plant", "score"))
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/flowers17"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/audit-planted"))
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--duplicates", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.action == "plant":
        plant(args.data, args.out, args.flip, args.duplicates, args.seed)
    else:
        score(args.out)


if __name__ == "__main__":
    main()
