"""Beam search as Hugging Face transformers 4.30-4.34 computes it, for one prompt, mirrored line
for line (no transformers here): GenerationMixin.beam_search in src/transformers/generation/utils.py,
BeamSearchScorer.process / finalize and BeamHypotheses in src/transformers/generation/beam_search.py
(at 010654337d6b9f7fb2a812ec470d9c547e0794f9), with the processors transformers' generate() builds
for these options (logits_process.py): RepetitionPenaltyLogitsProcessor, then
MinNewTokensLengthLogitsProcessor.

    beam_search(next_logits, prompt_len, input_ids, num_beams, max_new_tokens, eos_ids, ...)

next_logits(list of generated-id lists) -> logits [n, V] of each sequence's next token. The
caller recomputes the whole sequence each time (no KV cache: the reorder the C++ side does on its
cache is not mirrored, so it is checked rather than copied). `input_ids` are transformers'
input_ids before the first step: the prompt's ids for a prompt given as ids, [] for one given as
inputs_embeds (LAVIS's InstructBLIP), so that lengths and the repetition penalty see what
transformers' see. Each finished hypothesis also records the eos id it ended with (transformers
keeps only the ids before it and appends its first eos id); that is the one addition.
"""

import torch


def repetition_penalty(input_ids, scores, penalty):
    """RepetitionPenaltyLogitsProcessor on [B, V] scores; input_ids [B, L]."""
    if input_ids.shape[1] == 0:
        return scores
    score = torch.gather(scores, 1, input_ids)
    score = torch.where(score < 0, score * penalty, score / penalty)
    scores.scatter_(1, input_ids, score)
    return scores


def min_new_tokens(input_ids, scores, prompt_length_to_skip, min_new, eos_ids):
    """MinNewTokensLengthLogitsProcessor."""
    if input_ids.shape[-1] - prompt_length_to_skip < min_new:
        for e in eos_ids:
            scores[:, e] = -float("inf")
    return scores


class BeamHypotheses:
    def __init__(self, num_beams, length_penalty, early_stopping, max_length):
        self.length_penalty = length_penalty
        self.early_stopping = early_stopping
        self.max_length = max_length
        self.num_beams = num_beams
        self.beams = []
        self.worst_score = 1e9
        self.margins = []  # |a - b| of every comparison that decided something (not in transformers)

    def __len__(self):
        return len(self.beams)

    def add(self, hyp, sum_logprobs, eos=None):
        score = sum_logprobs / (len(hyp) ** self.length_penalty)
        if len(self) >= self.num_beams:
            self.margins.append(abs(score - self.worst_score))
        if len(self) < self.num_beams or score > self.worst_score:
            self.beams.append((score, hyp, eos))
            if len(self) > self.num_beams:
                sorted_next_scores = sorted([(s, idx) for idx, (s, _, _) in enumerate(self.beams)])
                del self.beams[sorted_next_scores[0][1]]
                self.worst_score = sorted_next_scores[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs, cur_len):
        if len(self) < self.num_beams:
            return False
        if self.early_stopping is True:
            return True
        if self.early_stopping is False:
            highest = best_sum_logprobs / cur_len ** self.length_penalty
        elif self.length_penalty > 0.0:  # "never"
            highest = best_sum_logprobs / self.max_length ** self.length_penalty
        else:
            highest = best_sum_logprobs / cur_len ** self.length_penalty
        self.margins.append(abs(self.worst_score - highest))
        return self.worst_score >= highest


@torch.no_grad()
def beam_search(next_logits, input_ids, num_beams, max_new_tokens, eos_ids, length_penalty=1.0,
                early_stopping=False, rep_penalty=1.0, min_new=0, num_return=1, gaps=None):
    """-> (list of num_return (score, generated ids (the eos included when it ended with one)),
    best first; the number of steps run; stats: how many hypotheses finished with an eos id (kept or
        not), how many eos candidates were skipped for their rank, whether a rule ended it early).
    `gaps`, when a list, gets the margin of every comparison that decided the result (how safe it
    is from rounding): each step, the gap between the last candidate that continues and the next
    one, and (when a stop id is among the candidates) between ranks num_beams - 1 and num_beams;
    every hypothesis added to a full list against the worst one, every stopping test against its
    bound; the returned hypotheses against each other and the next one."""
    prompt_len = len(input_ids)
    max_length = prompt_len + max_new_tokens
    hyps = BeamHypotheses(num_beams, length_penalty, early_stopping, max_length)
    ids = torch.tensor([list(input_ids)] * num_beams, dtype=torch.long).reshape(num_beams, prompt_len)
    beam_scores = torch.zeros((1, num_beams), dtype=torch.float)
    beam_scores[:, 1:] = -1e9
    beam_scores = beam_scores.view((num_beams,))
    done = False
    cur_len = prompt_len
    steps = 0
    finished = skipped = 0
    while True:
        logits = next_logits([row[prompt_len:].tolist() for row in ids]).float()
        scores = torch.nn.functional.log_softmax(logits, dim=-1)
        if rep_penalty != 1.0:
            scores = repetition_penalty(ids, scores, rep_penalty)
        if min_new > 0:
            scores = min_new_tokens(ids, scores, prompt_len, min_new, eos_ids)
        scores = scores + beam_scores[:, None].expand_as(scores)
        V = scores.shape[-1]
        flat = scores.view(1, num_beams * V)
        if gaps is not None:  # the 2 * num_beams + 1 best, for the margins below
            t = torch.topk(flat, min(2 * num_beams + 1, flat.shape[1]), dim=1, largest=True, sorted=True)[0][0]
        next_scores, next_tokens = torch.topk(flat, 2 * num_beams, dim=1, largest=True, sorted=True)
        next_indices = torch.div(next_tokens, V, rounding_mode="floor")
        next_tokens = next_tokens % V

        # BeamSearchScorer.process (batch of one)
        nb_scores = torch.zeros((num_beams,), dtype=next_scores.dtype)
        nb_tokens = torch.zeros((num_beams,), dtype=torch.long)
        nb_indices = torch.zeros((num_beams,), dtype=torch.long)
        beam_idx = 0
        for rank, (tok, sc, ix) in enumerate(zip(next_tokens[0], next_scores[0], next_indices[0])):
            if int(tok) in eos_ids:
                if rank >= num_beams:
                    skipped += 1
                    continue
                hyps.add(ids[int(ix)].clone(), sc.item(), eos=int(tok))
                finished += 1
            else:
                nb_scores[beam_idx] = sc
                nb_tokens[beam_idx] = tok
                nb_indices[beam_idx] = ix
                beam_idx += 1
            if beam_idx == num_beams:
                break
        assert beam_idx == num_beams
        if gaps is not None:
            if rank + 1 < len(t) and torch.isfinite(t[rank + 1]):
                gaps.append(float(t[rank] - t[rank + 1]))
            if any(int(x) in eos_ids for x in next_tokens[0]):
                gaps.append(float(t[num_beams - 1] - t[num_beams]))
        done = done or hyps.is_done(next_scores[0].max().item(), cur_len)

        beam_scores = nb_scores
        ids = torch.cat([ids[nb_indices, :], nb_tokens.unsqueeze(-1)], dim=-1)
        cur_len += 1
        steps += 1
        if done or cur_len >= max_length:
            break

    # finalize
    if not done:
        for b in range(num_beams):
            hyps.add(ids[b], beam_scores[b].item())
    best = sorted(hyps.beams, key=lambda x: x[0])
    if gaps is not None:
        gaps.extend(hyps.margins)
        top = [b[0] for b in best[::-1][:num_return + 1]]  # the returned ones and the next
        gaps.extend(a - b for a, b in zip(top, top[1:]))
    out = []
    for _ in range(num_return):
        score, hyp, eos = best.pop()
        gen = hyp[prompt_len:].tolist() + ([] if eos is None else [eos])
        out.append((score, gen))
    return out, steps, dict(finished=finished, skipped=skipped, early=done)
