"""What the text functions return (docs/methods.md §15)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch


@dataclass
class TokenAttribution:
    """Token attributions of B texts, right-padded to the longest of them (L tokens).

    scores: (B, L) the embedding attribution summed over the embedding dimension
        (signed; sum over tokens = F(x) - F(x') up to `delta`). Padding: exactly 0.
    norms: (B, L) its L2 norm over the embedding dimension (unsigned).
    input_ids, attention_mask: (B, L) int64 as the model saw them (right-padded for
        lists of texts; as given for a tensor batch).
    lengths: (B,) tokens per text (attention_mask.sum(1)).
    baseline_ids: (B, L) the baseline's token ids (None for baseline="zeros" and reference sets).
    target: (B,) the explained class / token id. position: (B,) the explained
        position (masked and causal LM), None for sequence classification.
    tokens: per text, its `lengths[i]` token strings (None without a tokenizer).
    delta: (B,) convergence delta (sum of scores - (F(x) - F(x'))), when computed.
    embeddings: (B, L, E) the full embedding attributions (return_embeddings=True).
    task, method, output, settings: what was computed.
    details: the engine's AttributionResult per bucket (return_details=True), with
        `buckets` the indices of the texts in each.
    n_evaluations, error_estimate, converged: (B,) per text, on the CPU
        (docs/methods.md §14): gradient evaluations, estimated relative L2 error of its
        embedding map, reached rtol (bool). With rtol all three; with fixed n_steps and
        the delta the first two (the estimate is then |delta| / |F(x) - F(x')|); else None.
    """

    scores: torch.Tensor
    norms: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    lengths: torch.Tensor
    target: torch.Tensor
    baseline_ids: Optional[torch.Tensor] = None
    position: Optional[torch.Tensor] = None
    tokens: Optional[List[List[str]]] = None
    delta: Optional[torch.Tensor] = None
    embeddings: Optional[torch.Tensor] = None
    task: str = ""
    method: str = ""
    output: str = "logit"
    settings: Dict[str, Any] = field(default_factory=dict)
    details: Optional[List[Any]] = None
    buckets: Optional[List[List[int]]] = None
    n_evaluations: Optional[torch.Tensor] = None
    error_estimate: Optional[torch.Tensor] = None
    converged: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.scores.shape[0]

    def text(self, i: int) -> Dict[str, Any]:
        """Text i without padding: ids, tokens, scores, norms (1-D, its own length), target,
        position, delta, and n_evaluations / error_estimate / converged where reported (None
        otherwise): the ragged row a store or a service writes."""
        if isinstance(i, bool) or not isinstance(i, int) or not -len(self) <= i < len(self):
            raise IndexError(f"text index {i!r} is out of range for {len(self)} texts")
        keep = self.attention_mask[i].bool()
        return {
            "ids": self.input_ids[i][keep],
            "tokens": None if self.tokens is None else self.tokens[i],
            "scores": self.scores[i][keep],
            "norms": self.norms[i][keep],
            "target": int(self.target[i]),
            "position": None if self.position is None else int(self.position[i]),
            "delta": None if self.delta is None else float(self.delta[i]),
            "n_evaluations": None if self.n_evaluations is None else int(self.n_evaluations[i]),
            "error_estimate": None if self.error_estimate is None else float(self.error_estimate[i]),
            "converged": None if self.converged is None else bool(self.converged[i]),
        }


@dataclass
class GenerationAttribution:
    """Attribution of a generated continuation to the tokens before it (one prompt).

    The sequence s = prompt (P tokens) + continuation (T tokens), N = P + T.
    matrix: (T, N) row k: the attribution of continuation token k's value
        (log p(s_{P+k} | s_<P+k) or its logit) to every source position j; zero for
        j >= P + k (later tokens) and, with attribute_to="prompt", for j >= P.
    norms: (T, N) the L2 norm over the embedding dimension (same zeros).
    embeddings: (T, N, E) full embedding attributions (return_embeddings=True).
    input_ids: (N,) the whole sequence; prompt_length: P; continuation_ids: (T,).
    tokens: N token strings (None without a tokenizer).
    values: (T,) each continuation token's value at the input; baseline_values: (T,)
        at the baseline; delta: (T,) sum of row k - (values - baseline_values).
    baseline_ids: (N,) the baseline's ids (None for baseline="zeros").
    output: "log_prob" or "logit"; attribute_to: "all" or "prompt".
    n_evaluations: (T,) gradient evaluations of each row (n_steps each without rtol).
    error_estimate: (T,) with rtol, each row's estimated relative L2 error; without, the
        completeness gap |delta| / |values - baseline_values| (docs/methods.md §14).
    converged: (T,) bool, estimate <= rtol (rtol only; None without).
    n_forward: path points run forward (a forward serves every row that asked for its
        point; the 3 forwards of the ends not counted); n_backward: backward passes (one
        per forward chunk and row that needed it); rounds: refinement rounds (1 without rtol).
    alphas, weights: (T, S) each row's samples and their weights, NaN / 0 padded (rtol only).
    """

    matrix: torch.Tensor
    norms: torch.Tensor
    input_ids: torch.Tensor
    prompt_length: int
    continuation_ids: torch.Tensor
    values: torch.Tensor
    baseline_values: Optional[torch.Tensor] = None
    delta: Optional[torch.Tensor] = None
    baseline_ids: Optional[torch.Tensor] = None
    tokens: Optional[List[str]] = None
    embeddings: Optional[torch.Tensor] = None
    output: str = "log_prob"
    attribute_to: str = "all"
    method: str = "ig"
    settings: Dict[str, Any] = field(default_factory=dict)
    n_evaluations: Optional[torch.Tensor] = None
    error_estimate: Optional[torch.Tensor] = None
    converged: Optional[torch.Tensor] = None
    n_forward: Optional[int] = None
    n_backward: Optional[int] = None
    rounds: Optional[int] = None
    alphas: Optional[torch.Tensor] = None
    weights: Optional[torch.Tensor] = None

    @property
    def prompt_matrix(self) -> torch.Tensor:
        """(T, P): the prompt's columns (what Captum's LLMAttributionResult.token_attr holds)."""
        return self.matrix[:, :self.prompt_length]
