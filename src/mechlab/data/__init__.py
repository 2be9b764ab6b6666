"""Data: the corpus registry, tokenizers and tokenised, memory-mapped corpora."""

from mechlab.data.corpora import REGISTRY, Corpus, cache_dir, get_corpus, load_text
from mechlab.data.tokenizers import BPETokenizer, ByteTokenizer, Tokenizer, load_tokenizer, save_tokenizer
from mechlab.data.tokens import TokenStream, build_tokenizer, token_stream

__all__ = [
    "REGISTRY", "Corpus", "cache_dir", "get_corpus", "load_text",
    "BPETokenizer", "ByteTokenizer", "Tokenizer", "load_tokenizer", "save_tokenizer",
    "TokenStream", "build_tokenizer", "token_stream",
]
