"""The MAE-style restoration network (reference §1.5).

A tiny pixel ViT encodes the ~10 % visible patches; every masked position is filled with Σ_q P_q·D_q (eq. 2); a
2-block decoder restores the whole image at 8 px per 14-px patch (128² at S=224, 256² at S=448).
"""
from __future__ import annotations

from dataclasses import dataclass

from functools import partial

import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn

from .config import MPAEConfig
from .pos_embed import init_linear_and_norm_, sincos_2d


@dataclass
class RandomMask:
    """Which patches stay visible: ``keep`` [B, n_keep] and ``masked`` [B, N − n_keep] indices, raster order."""

    keep: torch.Tensor
    masked: torch.Tensor
    restore: torch.Tensor  # permutation that puts [keep ; masked] back into raster order

    @classmethod
    def sample(cls, batch: int, num_patches: int, num_keep: int, *, device: torch.device,
               generator: torch.Generator | None = None) -> "RandomMask":
        """Per sample, keep the num_keep positions with the smallest uniform noise (as in MAE)."""
        noise = torch.rand(batch, num_patches, device=device, generator=generator)
        shuffle = torch.argsort(noise, dim=1)
        return cls(keep=shuffle[:, :num_keep], masked=shuffle[:, num_keep:], restore=torch.argsort(shuffle, dim=1))

    def masked_pixels(self, grid: int, patch: int) -> torch.Tensor:
        """[B, 1, grid·patch, grid·patch] float mask, 1 on the restored image's masked patches."""
        b = self.keep.shape[0]
        flags = torch.ones(b, grid * grid, device=self.keep.device)
        flags.scatter_(1, self.keep, 0.0)
        flags = flags.reshape(b, 1, grid, grid)
        return flags.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)


def _gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


class RestorationNetwork(nn.Module):
    def __init__(self, cfg: MPAEConfig) -> None:
        super().__init__()
        dim = cfg.descriptor_dim
        self.grid = cfg.grid_size
        self.out_patch = cfg.restoration_output_patch
        self.num_keep = cfg.num_visible
        norm = partial(nn.LayerNorm, eps=1e-5)
        self.patch_embed = PatchEmbed(cfg.image_size, cfg.patch_size, 3, dim)
        table = sincos_2d(dim, cfg.grid_size).unsqueeze(0)
        # Fixed tables; kept as buffers so the authors' checkpoints (which store them) load unchanged.
        self.register_buffer("pos_embed", table.clone())
        self.register_buffer("decoder_pos_embed", table.clone())
        block = lambda: Block(dim, cfg.restoration_heads, mlp_ratio=cfg.restoration_mlp_ratio, qkv_bias=True,  # noqa: E731
                              norm_layer=norm)
        self.blocks = nn.Sequential(*[block() for _ in range(cfg.restoration_encoder_depth)])
        self.norm = norm(dim)
        self.decoder_embed = nn.Linear(dim, dim)
        self.decoder_blocks = nn.Sequential(*[block() for _ in range(cfg.restoration_decoder_depth)])
        self.decoder_norm = norm(dim)
        self.decoder_pred = nn.Linear(dim, cfg.restoration_output_patch**2 * 3)
        self._init_weights()

    def _init_weights(self) -> None:
        w = self.patch_embed.proj.weight  # xavier on the flattened [out, in·k·k] view, as MAE does
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        init_linear_and_norm_(self)

    def sample_mask(self, batch: int, device: torch.device, generator: torch.Generator | None = None) -> RandomMask:
        return RandomMask.sample(batch, self.grid**2, self.num_keep, device=device, generator=generator)

    def forward(self, images: torch.Tensor, fill: torch.Tensor, mask: RandomMask) -> torch.Tensor:
        """Restore the image from its visible patches plus fill tokens [B, N, C] → [B, 3, grid·p, grid·p]."""
        x = self.patch_embed(images) + self.pos_embed
        x = self.norm(self.blocks(_gather_tokens(x, mask.keep)))
        x = torch.cat([self.decoder_embed(x), _gather_tokens(fill, mask.masked)], dim=1)
        x = _gather_tokens(x, mask.restore) + self.decoder_pos_embed
        x = self.decoder_pred(self.decoder_norm(self.decoder_blocks(x)))
        return self.unpatchify(x)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        b, g, p = x.shape[0], self.grid, self.out_patch
        x = x.reshape(b, g, g, p, p, 3)
        return torch.einsum("bhwpqc->bchpwq", x).reshape(b, 3, g * p, g * p)
