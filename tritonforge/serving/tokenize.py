"""Texts -> token ids and attention mask with the model's tokenizer.json (the `tokenizers` library).

Each request is padded to the smallest length bucket that holds its longest text (e.g. 16/32/64/128), so short
texts stay fast and requests of one bucket still batch together.
"""

import numpy as np

from .checks import texts_of


class TextEncoder:
    """`settings`: the spec's preprocess section, with tokenizer_file as a path."""

    def __init__(self, tokenizer_path, settings, output_names):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.max_length = int(settings["max_length"])
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.no_padding()
        self.buckets = sorted(b for b in settings["buckets"] if b <= self.max_length)
        if not self.buckets or self.buckets[-1] < self.max_length:
            self.buckets.append(self.max_length)
        self.max_text_bytes = int(settings["max_text_bytes"])
        self.pad_id = int(settings["pad_id"])
        self.text_input = settings["text_input"]
        self.ids_name, self.mask_name = output_names

    def texts(self, arrays):
        """The request's texts (RequestError for one too long or not UTF-8)."""
        return texts_of(arrays[self.text_input], self.text_input, self.max_text_bytes)

    def encode(self, texts_per_request):
        """One {ids, mask} per request, each padded to its own bucket."""
        flat = [t for texts in texts_per_request for t in texts]
        # A few texts are encoded on this thread: handing them to the tokenizer's thread pool costs more than it
        # saves when the cores are busy with inference anyway.
        encoded = self.tokenizer.encode_batch(flat) if len(flat) >= 8 else [self.tokenizer.encode(t) for t in flat]
        encodings = iter(encoded)
        out = []
        for texts in texts_per_request:
            seqs = [next(encodings).ids for _ in texts]
            width = next(b for b in self.buckets if b >= max(len(s) for s in seqs))
            ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(seqs), width), dtype=np.int64)
            for row, seq in enumerate(seqs):
                ids[row, :len(seq)] = seq
                mask[row, :len(seq)] = 1
            out.append({self.ids_name: ids, self.mask_name: mask})
        return out
