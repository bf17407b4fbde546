"""Read the MixDVAE authors' released SRNN checkpoints into mixest's own SRNN.

The published spectral priors (a speech prior trained on WSJ0 and a Chinese-bamboo-flute prior)
are PyTorch ``state_dict`` files of an SRNN in Fraccaro et al.'s layout, with their network
sizes in the ``[Network]`` section of an ``.ini`` file. The mapping below is written from the
tensor names and shapes and the SRNN equations:

==================================  =====================================================
checkpoint tensors                  mixest SRNN (``encoder_input="hx"``, ``log_input=False``)
==================================  =====================================================
``mlp_x_h``, ``rnn_h``              ``feature_x``, ``rnn``: ``h_t = LSTM(g(x_{t-1}), h_{t-1})``
``mlp_hx_g``, ``rnn_g``             ``feature_enc``, ``rnn_enc``: backward LSTM over ``[h_t, x_t]``
``mlp_gz_z``, ``inf_z_{mean,logvar}``   ``encoder_net``: ``q(z_t | a_t, z_{t-1})``
``mlp_hz_z``, ``prior_z_{mean,logvar}`` ``prior_net``: ``p(z_t | h_t, z_{t-1})``
``mlp_hz_x``, ``gen_x``             ``decoder_net``: log-variance of ``x_t`` from ``[h_t, z_t]``
==================================  =====================================================

Inputs are the power spectra themselves (no log, no standardisation) and the decoder's output
is the log-variance; every dense layer is followed by tanh. Which of the possible input orders
of the concatenations is the right one was checked on held-out data: with ``[h, x]``,
``[g, z]`` and ``[h, z]`` the speech prior's Itakura-Saito reconstruction of held-out speech is
more than ten times better than with any other order (``docs/separation.md``).
"""

from __future__ import annotations

import configparser
import os
from pathlib import Path

import torch

__all__ = ["read_network_config", "convert_state_dict"]


def _dims(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.replace(" ", "").split(",") if v)


def read_network_config(config: str | os.PathLike | dict) -> dict:
    """The ``[Network]`` settings of an authors' ``.ini`` file (or a dict of the same keys).

    Returns
    -------
    dict
        mixest module options (``x_dim``, ``z_dim``, ``rnn_dim``, ``dense_dims``,
        ``latent_dims``) of the equivalent SRNN.

    Raises
    ------
    ValueError
        If the file has no ``[Network]`` section, a key is missing, or the network is not one
        mixest's SRNN can hold (several LSTM layers, dropout, an activation other than tanh,
        dense blocks of different sizes).
    """
    if isinstance(config, dict):
        net = {k.lower(): str(v) for k, v in config.items()}
        source = "config"
    else:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist.")
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except configparser.Error as exc:
            raise ValueError(f"{path} is not a readable .ini file: {exc}") from exc
        if not parser.has_section("Network"):
            raise ValueError(f"{path} has no [Network] section.")
        net = dict(parser["Network"])
        source = str(path)
    needed = ("x_dim", "z_dim", "dense_x_h", "dim_rnn_h", "dense_hx_g", "dim_rnn_g",
              "dense_gz_z", "dense_hz_x", "dense_hz_z")
    missing = [k for k in needed if k not in net]
    if missing:
        raise ValueError(f"{source}: [Network] lacks {', '.join(missing)}.")
    try:
        x_dim, z_dim = int(net["x_dim"]), int(net["z_dim"])
        rnn_h, rnn_g = int(net["dim_rnn_h"]), int(net["dim_rnn_g"])
        blocks = {k: _dims(net[k]) for k in ("dense_x_h", "dense_hx_g", "dense_hz_x",
                                              "dense_gz_z", "dense_hz_z")}
        layers = (int(net.get("num_rnn_h", 1)), int(net.get("num_rnn_g", 1)))
        dropout = float(net.get("dropout_p", 0))
    except ValueError as exc:
        raise ValueError(f"{source}: a [Network] size is not a number: {exc}") from exc
    activation = net.get("activation", "tanh").strip()
    problems = []
    if activation != "tanh":
        problems.append(f"activation {activation!r} (mixest's SRNN uses tanh)")
    if layers != (1, 1):
        problems.append(f"{layers} LSTM layers (one each is supported)")
    if dropout != 0:
        problems.append(f"dropout_p {dropout}")
    if rnn_h != rnn_g:
        problems.append(f"dim_RNN_h {rnn_h} != dim_RNN_g {rnn_g}")
    if not (blocks["dense_x_h"] == blocks["dense_hx_g"] == tuple(reversed(blocks["dense_hz_x"]))):
        problems.append("dense_x_h, dense_hx_g and reversed dense_hz_x differ")
    if blocks["dense_gz_z"] != blocks["dense_hz_z"]:
        problems.append("dense_gz_z and dense_hz_z differ")
    if problems:
        raise ValueError(f"{source}: this SRNN does not fit mixest's: {'; '.join(problems)}.")
    return {"x_dim": x_dim, "z_dim": z_dim, "rnn_dim": rnn_h,
            "dense_dims": blocks["dense_x_h"], "latent_dims": blocks["dense_gz_z"]}


def _mlp_pairs(prefix: str, ours: str, n_layers: int) -> list[tuple[str, str]]:
    # nn.Sequential(Linear, Tanh, Linear, Tanh, ...): linear_i is entry 2 i
    return [(f"{prefix}.linear_{i}.{p}", f"{ours}.{2 * i}.{p}")
            for i in range(n_layers) for p in ("weight", "bias")]


def convert_state_dict(state: dict, options: dict, target: dict) -> dict:
    """The authors' ``state`` with mixest's names, filled into ``target`` (a module's
    ``state_dict``, whose buffers keep their values).

    Raises
    ------
    ValueError
        If a tensor is missing, left over, or has the wrong shape.
    """
    n_dense, n_latent = len(options["dense_dims"]), len(options["latent_dims"])
    pairs = (_mlp_pairs("mlp_x_h", "feature_x", n_dense)
             + _mlp_pairs("mlp_hx_g", "feature_enc", n_dense)
             + _mlp_pairs("mlp_hz_x", "decoder_net", n_dense)
             + _mlp_pairs("mlp_gz_z", "encoder_net", n_latent)
             + _mlp_pairs("mlp_hz_z", "prior_net", n_latent)
             + [(f"gen_x.{p}", f"decoder_net.{2 * n_dense}.{p}") for p in ("weight", "bias")])
    for theirs, ours in (("rnn_h", "rnn"), ("rnn_g", "rnn_enc")):
        pairs += [(f"{theirs}.{p}_l0", f"{ours}.{p}_l0")
                  for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    out = dict(target)
    used = set()

    def take(name: str) -> torch.Tensor:
        if name not in state:
            raise ValueError(f"the checkpoint lacks tensor {name!r}.")
        used.add(name)
        return state[name]

    for theirs, ours in pairs:
        out[ours] = take(theirs)
    # mean and log-variance heads stacked into one output layer, mean first (chunk order)
    for mean, logvar, ours in (("inf_z_mean", "inf_z_logvar", "encoder_net"),
                               ("prior_z_mean", "prior_z_logvar", "prior_net")):
        for p in ("weight", "bias"):
            out[f"{ours}.{2 * n_latent}.{p}"] = torch.cat([take(f"{mean}.{p}"),
                                                           take(f"{logvar}.{p}")])
    left = sorted(set(state) - used)
    if left:
        raise ValueError(f"the checkpoint has tensors this SRNN does not use: {left[:5]}.")
    for name, value in out.items():
        if tuple(value.shape) != tuple(target[name].shape):
            raise ValueError(f"tensor for {name} has shape {tuple(value.shape)}, the network "
                             f"of the config expects {tuple(target[name].shape)}.")
        out[name] = value.to(target[name].dtype)
    return out
