"""Task heads on any backbone (bert, gpt2 or llama family), with Hugging Face's outputs and losses.

    backbone(input_ids) → hidden states (B, T, C) → head → logits (→ loss when labels are given)

* ``TransformerForSequenceClassification``: one label per sequence. The bert family reads the pooler
  (tanh(W·h_[CLS] + b)), as HF's ``BertForSequenceClassification``; a decoder reads the hidden state of the
  **last real token** (the only one that has seen the whole text under a causal mask), found from the
  attention mask so that extra padding — left or right — never changes the prediction. ``pooling="mean"``
  reads the mean of the real tokens' states instead: what sentence-transformers trained MiniLM to produce,
  and a far better frozen feature than its pooler (a probe on it: ≈0.76 test accuracy on movie reviews
  against ≈0.67 on the pooler). HF has no such head, so such a model does not export to HF's format.
  ``num_labels == 1`` is regression (MSE); integer labels are single-label classification (cross-entropy);
  float labels of shape (B, num_labels) are multi-label (binary cross-entropy per label) — HF's
  ``problem_type`` rule.
* ``TransformerForTokenClassification``: one label per token (NER); labels −100 are skipped.
* ``TransformerForQuestionAnswering``: a start and an end logit per token; the loss is the mean of the two
  cross-entropies, positions outside the sequence ignored (HF clamps them to T and ignores T).

The head is called ``classifier`` (``qa_outputs`` for QA) in every family. Hugging Face names it
``classifier`` for BERT and ``score`` for GPT-2 and Llama; the HF-format save maps the name.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .. import functional as F
from ..autograd.tensor import Tensor
from ..backend import xp
from ..nn import Dropout, Linear, Module
from .transformer import ModelOutput, TransformerModel, init_weights


@dataclass
class QuestionAnsweringOutput(ModelOutput):
    """ModelOutput plus HF's ``start_logits`` and ``end_logits`` (each (B, T))."""

    start_logits: Tensor | None = None
    end_logits: Tensor | None = None


def head_config(config, num_labels, id2label, minimum):
    """A copy of ``config`` carrying the head's ``num_labels`` (and ``id2label``), saved with the model."""
    if id2label is not None:
        id2label = {int(k): str(v) for k, v in dict(id2label).items()}
        if num_labels is None:
            num_labels = len(id2label)
    num_labels = config.num_labels if num_labels is None else num_labels
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < minimum:
        raise ValueError(f"num_labels must be an integer >= {minimum}, got {num_labels!r}")
    if id2label is not None and sorted(id2label) != list(range(num_labels)):
        raise ValueError(f"id2label must name the classes 0..{num_labels - 1}, got keys {sorted(id2label)}")
    return replace(config, num_labels=num_labels, id2label=id2label if id2label is not None else config.id2label)


def _int_array(x):
    return x.data if isinstance(x, Tensor) else xp.asarray(x)


def last_token_index(attention_mask, input_ids, pad_token_id=None):
    """Index of each row's last real token, (B,): the rightmost position whose mask is 1.

    Without a mask, the rightmost token that is not ``pad_token_id`` (HF's rule); without either, T − 1.
    Works for left and right padding alike.
    """
    ids = _int_array(input_ids)
    ids = ids[None, :] if ids.ndim == 1 else ids  # (T,) -> (1, T)
    b, t = ids.shape
    if attention_mask is not None:
        real = _int_array(attention_mask).reshape(b, t) != 0  # (B, T): a 1-D mask of one row becomes (1, T)
    elif pad_token_id is not None:
        real = ids != pad_token_id
    else:
        return xp.full((b,), t - 1)
    positions = xp.arange(t)[None, :]  # (1, T)
    return xp.max(xp.where(real, positions, -1), axis=1).clip(0, None)  # (B,); an all-padding row reads 0


class ClassifierHead(Module):
    """What the two classification heads share: backbone, dropout, and a Linear(C, num_labels) ``classifier``
    initialized N(0, 0.02²); ``num_labels`` / ``id2label`` live in the head's copy of the config."""

    min_labels = 2

    def __init__(self, config, num_labels=None, backbone: TransformerModel | None = None, classifier_dropout=None,
                 id2label=None, pooling=None):
        super().__init__()
        config = head_config(config, num_labels, id2label, minimum=self.min_labels)
        if pooling is not None:
            config = replace(config, classifier_pooling=pooling)
        self.config = config
        self.num_labels = config.num_labels
        self.model = backbone if backbone is not None else TransformerModel(config)
        drop = config.hidden_dropout_prob if classifier_dropout is None else classifier_dropout
        self.dropout = Dropout(drop)
        self.classifier = Linear(config.hidden_size, self.num_labels, bias=self.classifier_bias(config))
        init_weights(self.classifier, config.initializer_range)

    @staticmethod
    def classifier_bias(config) -> bool:
        return True


class TransformerForSequenceClassification(ClassifierHead):
    """Backbone + dropout + ``classifier`` Linear(C, num_labels) on the pooled or last-token state."""

    min_labels = 1  # one label: regression

    @staticmethod
    def classifier_bias(config) -> bool:
        return config.family == "bert"  # HF's decoder heads (``score``) have no bias

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **kw):
        out = self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kw)
        features = self.pool(out, input_ids, attention_mask)  # (B, C)
        out.logits = self.classifier(self.dropout(features))  # (B, num_labels)
        if labels is not None:
            out.loss = sequence_classification_loss(out.logits, labels, self.num_labels)
        return out


    def pool(self, out, input_ids, attention_mask):
        """(B, C): the pooler (bert), the last real token (decoders), or the mean over real tokens."""
        pooling = self.config.classifier_pooling or ("pooler" if self.config.family == "bert" else "last")
        h = out.last_hidden_state  # (B, T, C)
        if pooling == "pooler":
            if out.pooler_output is None:
                raise ValueError(f"pooling='pooler' needs a bert-family backbone; {self.config.family} has no pooler")
            return out.pooler_output
        if pooling == "mean":
            b, t, _ = h.shape
            mask = xp.ones((b, t), dtype=h.dtype) if attention_mask is None else \
                _int_array(attention_mask).reshape(b, t).astype(h.dtype)  # the mask as (B, T)
            weights = mask / mask.sum(axis=1, keepdims=True)  # (B, T): 1/n on the n real tokens
            return (h * weights[:, :, None]).sum(axis=1)  # (B, T, C) -> (B, C)
        last = last_token_index(attention_mask, input_ids, self.config.pad_token_id)  # (B,)
        return h[xp.arange(h.shape[0]), last]  # each row's last real token


def sequence_classification_loss(logits, labels, num_labels):
    """HF's problem_type rule: regression (num_labels 1) → MSE; integer labels → CE; float (B, K) → BCE."""
    y = labels.data if isinstance(labels, Tensor) else xp.asarray(labels)
    if num_labels == 1:
        # logits (B, 1) -> (B,); labels (B,) or (B, 1) -> (B,)
        return F.mse_loss(logits.reshape(-1), y.reshape(-1).astype(logits.dtype))
    if y.dtype.kind in "iu":
        if y.ndim != 1 or y.shape[0] != logits.shape[0]:
            raise ValueError(f"labels must be (batch,) = ({logits.shape[0]},) class indices, got shape {y.shape}")
        return F.cross_entropy(logits, y)
    if y.shape != tuple(logits.shape):
        raise ValueError(f"float labels mean multi-label targets of shape {tuple(logits.shape)}, got {y.shape}; "
                         "pass integer class indices for single-label classification")
    return F.binary_cross_entropy_with_logits(logits, y.astype(logits.dtype))


class TransformerForTokenClassification(ClassifierHead):
    """Backbone + dropout + ``classifier`` Linear(C, num_labels) on every token; labels −100 are skipped."""

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, **kw):
        out = self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kw)
        out.logits = self.classifier(self.dropout(out.last_hidden_state))  # (B, T, num_labels)
        if labels is not None:
            b, t, k = out.logits.shape
            y = _int_array(labels)
            if y.shape != (b, t):
                raise ValueError(f"labels must be (batch, seq_len) = {(b, t)} like input_ids, got {tuple(y.shape)}")
            out.loss = F.cross_entropy(out.logits.reshape(b * t, k), y.reshape(-1))  # (B·T, K) vs (B·T,)
        return out


class TransformerForQuestionAnswering(Module):
    """Backbone + ``qa_outputs`` Linear(C, 2): a start and an end logit for every token."""

    def __init__(self, config, backbone: TransformerModel | None = None):
        super().__init__()
        self.config = config
        self.model = backbone if backbone is not None else TransformerModel(config)
        self.qa_outputs = Linear(config.hidden_size, 2)
        init_weights(self.qa_outputs, config.initializer_range)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, start_positions=None,
                end_positions=None, **kw):
        out = self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, **kw)
        logits = self.qa_outputs(out.last_hidden_state)  # (B, T, 2)
        b, t, _ = logits.shape
        result = QuestionAnsweringOutput(**vars(out))
        result.start_logits = logits[:, :, 0]  # (B, T)
        result.end_logits = logits[:, :, 1]  # (B, T)
        if start_positions is not None and end_positions is not None:
            result.loss = span_loss(result.start_logits, result.end_logits, start_positions, end_positions)
        return result


def span_loss(start_logits, end_logits, start_positions, end_positions):
    """(CE(start_logits, start) + CE(end_logits, end)) / 2; positions outside [0, T) are ignored (HF)."""
    t = start_logits.shape[1]
    starts = xp.clip(_int_array(start_positions).reshape(-1), 0, t)  # a position ≥ T becomes T: ignored
    ends = xp.clip(_int_array(end_positions).reshape(-1), 0, t)  # (B,), as the starts
    start_loss = F.cross_entropy(start_logits, starts, ignore_index=t)
    end_loss = F.cross_entropy(end_logits, ends, ignore_index=t)
    return (start_loss + end_loss) / 2
