"""Data: the corpus registry, tokenizers, tokenised, memory-mapped corpora and training windows."""

from mechlab.data.batches import batch_offsets, get_batch, window_batches
from mechlab.data.corpora import REGISTRY, Corpus, cache_dir, get_corpus, load_text
from mechlab.data.tokenizers import BPETokenizer, ByteTokenizer, Tokenizer, load_tokenizer, save_tokenizer
from mechlab.data.tokens import TokenStream, build_tokenizer, token_stream

__all__ = [
    "batch_offsets", "get_batch", "window_batches",
    "REGISTRY", "Corpus", "cache_dir", "get_corpus", "load_text",
    "BPETokenizer", "ByteTokenizer", "Tokenizer", "load_tokenizer", "save_tokenizer",
    "TokenStream", "build_tokenizer", "token_stream",
]
