"""tritonforge tokenizer (Triton Python backend): UTF-8 texts in, token ids and attention mask out.

Uses the `tokenizers` library with the model's tokenizer.json (copied beside this file). Each request is padded
to the smallest length bucket that holds its longest text (e.g. 16/32/64/128), so short texts stay fast and
requests of one bucket still batch together downstream. Texts over `max_text_bytes`, or not UTF-8, are refused
with an error naming the text.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils
from tf_batching import config_parameters, error_response
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        p = config_parameters(config)
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.tokenizer = Tokenizer.from_file(os.path.join(version_dir, p.get("tokenizer_file", "tokenizer.json")))
        self.max_length = int(p.get("max_length", "128"))
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.no_padding()
        self.buckets = sorted(int(b) for b in json.loads(p.get("buckets", "[]")) if int(b) <= self.max_length)
        if not self.buckets or self.buckets[-1] < self.max_length:
            self.buckets.append(self.max_length)
        self.max_text_bytes = int(p.get("max_text_bytes", "65536"))
        self.pad_id = int(p.get("pad_id", "0"))
        self.text_input = config["input"][0]["name"]
        self.ids_name, self.mask_name = json.loads(p["outputs"])

    def _bucket(self, length):
        return next(b for b in self.buckets if b >= length)

    def _texts(self, request):
        raw = pb_utils.get_input_tensor_by_name(request, self.text_input).as_numpy().reshape(-1)
        texts = []
        for i, item in enumerate(raw):
            b = item if isinstance(item, bytes) else str(item).encode()
            if len(b) > self.max_text_bytes:
                raise ValueError(f"text {i} of input '{self.text_input}' is {len(b)} bytes; the limit is {self.max_text_bytes}")
            try:
                texts.append(b.decode("utf-8"))
            except UnicodeDecodeError:
                raise ValueError(f"text {i} of input '{self.text_input}' is not valid UTF-8") from None
        return texts

    def execute(self, requests):
        responses = [None] * len(requests)
        texts, owners = [], []
        for r, request in enumerate(requests):
            try:
                t = self._texts(request)
            except ValueError as e:
                responses[r] = error_response(str(e), pb_utils.TritonError.INVALID_ARG)
                continue
            texts.extend(t)
            owners.extend([r] * len(t))
        encodings = self.tokenizer.encode_batch(texts) if texts else []
        per_request = {}
        for owner, enc in zip(owners, encodings):
            per_request.setdefault(owner, []).append(enc.ids)
        for r, seqs in per_request.items():
            width = self._bucket(max(len(s) for s in seqs))
            ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(seqs), width), dtype=np.int64)
            for row, seq in enumerate(seqs):
                ids[row, :len(seq)] = seq
                mask[row, :len(seq)] = 1
            responses[r] = pb_utils.InferenceResponse([pb_utils.Tensor(self.ids_name, ids),
                                                       pb_utils.Tensor(self.mask_name, mask)])
        return responses
