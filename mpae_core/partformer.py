"""PartFormer: a small ViT on raw pixels whose K+1 query tokens become the part descriptors D (reference §1.3)."""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import QuickGELU
from timm.models.vision_transformer import Block
from torch import nn

from .config import MPAEConfig
from .pos_embed import init_linear_and_norm_, sincos_2d


class PartFormer(nn.Module):
    """Q learnable queries are prepended to the patch tokens; after 6 pre-LN blocks they are the descriptors.

    Matches the reference's CLIP-style transformer: QuickGELU, LayerNorm eps 1e-5, no bias on the patch conv or
    the output projection, a learnable position table whose Q query rows start at zero and whose patch rows
    start from the sin-cos table.
    """

    def __init__(self, cfg: MPAEConfig) -> None:
        super().__init__()
        dim, q, n = cfg.descriptor_dim, cfg.num_slots, cfg.num_patches
        self.num_slots = q
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.queries = nn.Parameter(torch.zeros(1, q, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, q + n, dim))
        norm = partial(nn.LayerNorm, eps=1e-5)
        self.norm_pre = norm(dim)
        self.blocks = nn.Sequential(
            *[
                Block(dim, cfg.partformer_heads, mlp_ratio=cfg.partformer_mlp_ratio, qkv_bias=True,
                      act_layer=QuickGELU, norm_layer=norm)
                for _ in range(cfg.partformer_depth)
            ]
        )
        self.norm = norm(dim)
        self.proj = nn.Linear(dim, dim, bias=False)
        self._init_weights(cfg)

    def _init_weights(self, cfg: MPAEConfig) -> None:
        init_linear_and_norm_(self, conv=True)
        nn.init.normal_(self.queries, std=0.02)
        with torch.no_grad():
            self.pos_embed[0, self.num_slots :] = sincos_2d(cfg.descriptor_dim, cfg.grid_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] normalised images → descriptors [B, Q, C], background last."""
        x = self.patch_embed(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.queries.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.blocks[:-1](self.norm_pre(x))
        x = _block_for_first_tokens(self.blocks[-1], x, self.num_slots)
        return self.proj(self.norm(x))


def _block_for_first_tokens(block: Block, x: torch.Tensor, count: int) -> torch.Tensor:
    """A pre-LN block evaluated only for the first ``count`` tokens (the queries).

    Only the query rows of the last block are used, so its patch-token rows need no attention output and no MLP;
    keys and values still come from every token, which makes this exactly the full block's first rows at about
    a sixth less PartFormer work.
    """
    attn = block.attn
    h = block.norm1(x)
    b, t, c = h.shape
    heads = attn.num_heads
    weight, bias = attn.qkv.weight, attn.qkv.bias
    q = F.linear(h[:, :count], weight[:c], bias[:c]).view(b, count, heads, c // heads).transpose(1, 2)
    k, v = F.linear(h, weight[c:], bias[c:]).view(b, t, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, count, c)
    x = x[:, :count] + block.ls1(attn.proj(out))
    return x + block.ls2(block.mlp(block.norm2(x)))
