"""A tiny Hugging Face model folder and text files for the text job / serve tests
(test_textapps_*.py): tests/text_models.py's random BERT classifier and word tokenizer,
saved with save_pretrained (nothing downloaded)."""
import contextlib
import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from text_models import bert_classifier, random_texts, word_tokenizer

N_TEXTS = 30


def model_folder(path: Path, num_labels: int = 3) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model = bert_classifier(num_labels=num_labels)
    model.config.id2label = {i: f"class{i}" for i in range(num_labels)}
    model.config.label2id = {f"class{i}": i for i in range(num_labels)}
    model.save_pretrained(path)
    word_tokenizer().save_pretrained(path)
    return path


def row(res, i: int) -> dict:
    """Text i of a TokenAttribution without padding (its attention mask), read field by field."""
    keep = res.attention_mask[i].bool()
    return {"ids": res.input_ids[i][keep], "scores": res.scores[i][keep], "norms": res.norms[i][keep]}


def texts(n: int = N_TEXTS, seed: int = 0):
    """n texts of mixed lengths: 1 to 40 words, so 3 to 42 tokens with [CLS] / [SEP]."""
    return random_texts(n, 1, 40, seed=seed)


def write_jsonl(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return Path(path)


def write_csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return Path(path)


@contextlib.contextmanager
def served(service):
    """A real uvicorn server for `service` on a free loopback port and an httpx client,
    yielded once /readyz says 200 (its warm-up done)."""
    import httpx

    from pathattr.apps.serve import ServerThread, build_app

    with ServerThread(build_app(service)) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        end = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < end, client.get("/readyz").text
            time.sleep(0.02)
        yield client


def kill_after_first_chunk(cmd, out: Path, env) -> None:
    """Run `cmd` (a `pathattr attribute` command writing into `out`), SIGKILL it once its
    second chunk is committed, and check that the run did not finish."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    end = time.monotonic() + 120
    while not (Path(out) / "chunks" / "chunk-000001.json").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < end
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (Path(out) / "manifest.json").exists()
