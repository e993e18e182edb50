"""Data-pipeline throughput on this machine (not a test): image loading + CLIP-336 preprocessing per
worker, validate-data time per 10K samples, and tokenization speed.

    python benchmarks/bench_data.py [--images 400] [--samples 10000] [--workers 16]

`--build FILE.json` instead times the tokenized-table build of a whole data file (as training runs it: into a
fresh tokenization cache, `--repeat` times in one process) with the real InternLM2 tokenizer when
`../shared/real/internlm2_tokenizer` exists (else the tiny one), and reports the peak resident memory of this
process and of all its processes together (tokenizing workers included). For the 665K-sample mix:

    python benchmarks/make_llava_mix.py /tmp/mix665k.json
    /usr/bin/time -v python benchmarks/bench_data.py --build /tmp/mix665k.json --repeat 2
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import llava_hf  # noqa: E402,F401
from llava_hf.data.images import load_image, resolve_image_path  # noqa: E402
from llava_hf.data.sources import DataSource, read_samples  # noqa: E402
from llava_hf.demo.synthetic import make_synthetic_dataset  # noqa: E402
from llava_hf.data.templates import get_template  # noqa: E402
from llava_hf.data.tokenization import tokenize_conversation  # noqa: E402
from llava_hf.data.validate import validate_data  # noqa: E402
from llava_hf.testing.tiny_tokenizer import build_tiny_internlm2_tokenizer_files  # noqa: E402


def clip_336_processor(tokenizer_dir: str):
    """The real workload: the LLaVA-InternLM2 processor with OpenAI CLIP ViT-L/14-336 preprocessing settings."""
    from transformers import AutoTokenizer, CLIPImageProcessorPil

    from llava_hf.models.llava_internlm2.processing_llava_internlm2 import LlavaInternLM2Processor

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    return LlavaInternLM2Processor(image_processor, tokenizer, image_seq_length=576)


def bench_images(paths: dict, n: int, processor) -> None:
    samples = [s for s in read_samples(paths["finetune_json"]) if "image" in s][:n]
    for pad in (False, True):
        start = time.perf_counter()
        for sample in samples:
            path, _ = resolve_image_path(paths["image_folder"], sample["image"])
            processor.preprocess_images([load_image(path)], pad_to_square=pad)
        rate = len(samples) / (time.perf_counter() - start)
        print(f"image load + CLIP-336 preprocess (pad_to_square={pad}): {rate:7.1f} samples/s per worker "
              f"({len(samples)} images of 200-500 px)")


def bench_validate(paths: dict, n: int, workers: int, out_dir: str) -> None:
    samples = read_samples(paths["finetune_json"])
    big = [dict(samples[i % len(samples)], id=str(i)) for i in range(n)]
    big_path = os.path.join(out_dir, "big.json")
    with open(big_path, "w") as f:
        json.dump(big, f)
    source = DataSource(big_path, paths["image_folder"])
    start = time.perf_counter()
    report = validate_data(source, num_workers=workers)
    seconds = time.perf_counter() - start
    assert report.ok, report.format()
    print(f"validate-data (JSON + header-only image checks, {workers} threads): {seconds / n * 1e4:6.2f} s per 10K samples "
          f"-> {seconds / n * 665_298 / 60:5.1f} min for mix665k")
    return source


def bench_tokenization(source: DataSource, tokenizer_dir: str) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    template = get_template("internlm2_chat")
    samples = read_samples(source.data_path)[:5000]
    start = time.perf_counter()
    for s in samples:
        tokenize_conversation(s["conversations"], tokenizer, template, image_token_id=-200, has_image="image" in s)
    rate = len(samples) / (time.perf_counter() - start)
    print(f"tokenization (tiny tokenizer, one process): {rate:7.0f} samples/s -> {665_298 / rate / 60:5.1f} min for mix665k")


REAL_TOKENIZER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "real", "internlm2_tokenizer")


class PeakMemory:
    """Samples, every 0.2 s in a thread, the resident memory of this process (what `/usr/bin/time -v` reports) and the
    proportional memory of this process and all its children together (shared pages counted once)."""

    def __init__(self):
        import threading

        import psutil

        self.process, self.own, self.total = psutil.Process(), 0, 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import psutil

        while not self.stopped.wait(0.2):
            try:  # proportional set sizes: pages the forked workers share with this process count once
                own = self.process.memory_info().rss
                total = sum(p.memory_full_info().pss for p in [self.process, *self.process.children(recursive=True)])
            except psutil.Error:
                continue
            self.own, self.total = max(self.own, own), max(self.total, total)

    def stop(self):
        self.stopped.set()
        self.thread.join()


def bench_build(data_path: str, repeat: int, num_proc: int | None, tiny_tokenizer: bool) -> None:
    from llava_hf.data.dataset import build_llava_dataset

    tokenizer_dir = os.path.abspath(REAL_TOKENIZER)
    with tempfile.TemporaryDirectory() as out_dir:
        if tiny_tokenizer or not os.path.isfile(os.path.join(tokenizer_dir, "tokenizer.model")):
            tokenizer_dir = build_tiny_internlm2_tokenizer_files(os.path.join(out_dir, "tokenizer"))
        processor = clip_336_processor(tokenizer_dir)
        print(f"tokenizer: {tokenizer_dir} ({len(processor.tokenizer)} tokens); cores: {os.cpu_count()}; "
              f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
        images = os.path.join(out_dir, "images")
        os.makedirs(images)
        for attempt in range(1, repeat + 1):
            memory = PeakMemory()
            start = time.perf_counter()
            dataset = build_llava_dataset(DataSource(data_path, images), processor, "internlm2_chat", num_proc=num_proc,
                                          cache_dir=os.path.join(out_dir, f"cache{attempt}"))
            seconds = time.perf_counter() - start
            memory.stop()
            print(f"build {attempt}: {len(dataset)} samples ({dataset.stats}) in {seconds:.0f} s; peak resident "
                  f"{memory.own / 2**30:.2f} GiB in this process, {memory.total / 2**30:.2f} GiB with its workers (PSS); "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
            del dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--build", metavar="FILE", help="time the tokenized-table build of this LLaVA data file")
    parser.add_argument("--repeat", type=int, default=1, help="builds in one process (with --build)")
    parser.add_argument("--num-proc", type=int, default=None, help="tokenizing processes (with --build; default: cores)")
    parser.add_argument("--tiny-tokenizer", action="store_true", help="with --build: the tiny tokenizer, not the real one")
    args = parser.parse_args()
    if args.build:
        bench_build(args.build, args.repeat, args.num_proc, args.tiny_tokenizer)
        return
    with tempfile.TemporaryDirectory() as out_dir:
        start = time.perf_counter()
        paths = make_synthetic_dataset(out_dir, n_pretrain=0, n_finetune=max(args.images, 1000), seed=0)
        print(f"synthetic data: {max(args.images, 1000)} images in {time.perf_counter() - start:.1f} s")
        tokenizer_dir = build_tiny_internlm2_tokenizer_files(os.path.join(out_dir, "tokenizer"))
        bench_images(paths, args.images, clip_336_processor(tokenizer_dir))
        source = bench_validate(paths, args.samples, args.workers, out_dir)
        bench_tokenization(source, tokenizer_dir)


if __name__ == "__main__":
    main()
