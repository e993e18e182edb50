"""Data-pipeline throughput on this machine (not a test): image loading + CLIP-336 preprocessing per
worker, validate-data time per 10K samples, and tokenization speed.

    python benchmarks/bench_data.py [--images 400] [--samples 10000] [--workers 16]
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
from llava_hf.data.synthetic import make_synthetic_dataset  # noqa: E402
from llava_hf.data.templates import get_template  # noqa: E402
from llava_hf.data.tokenization import tokenize_conversation  # noqa: E402
from llava_hf.data.validate import validate_data  # noqa: E402
from llava_hf.demo.tiny_tokenizer import build_tiny_internlm2_tokenizer_files  # noqa: E402


def clip_336_processor(tokenizer_dir: str):
    """The real workload: the LLaVA-InternLM2 processor with OpenAI CLIP ViT-L/14-336 preprocessing settings."""
    from transformers import AutoTokenizer, CLIPImageProcessor

    from llava_hf.models.llava_internlm2.processing_llava_internlm2 import LlavaInternLM2Processor

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
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
