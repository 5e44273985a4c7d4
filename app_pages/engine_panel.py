"""Sidebar: where work runs (this machine, or a Ray cluster) and what the cluster looks like.

The choice is kept in the session (`engine_choice()`) for the pages that start work (Tune).
The cluster is described by a child process (`audioclf.engines.describe_engine`): the app's
server never becomes a Ray driver itself.
"""
from __future__ import annotations

import os

import streamlit as st

from app_pages.common import guard

ENGINE_KEY = "engine"
ADDRESS_KEY = "ray_address"
INFO_KEY = "_engine_info"
LABELS = {"local": "This machine", "ray": "Ray cluster"}


def engine_choice() -> tuple[str, str]:
    """(engine, address) chosen in the sidebar; ("local", "") until someone picks Ray."""
    name = st.session_state.get(ENGINE_KEY, "local")
    return name, (st.session_state.get(ADDRESS_KEY) or "").strip() if name == "ray" else ""


def engine_sidebar() -> None:
    from audioclf.engines import ENV_RAY_ADDRESS, describe_engine

    with st.sidebar.expander("Where work runs", expanded=st.session_state.get(ENGINE_KEY) == "ray"):
        name = st.radio("Engine", list(LABELS), format_func=LABELS.get, key=ENGINE_KEY, horizontal=True,
                        help="Searches (Tune) run their trials here. A Ray cluster spreads them over its nodes; "
                             "its nodes must reach this workspace (shared disk).")
        if name != "ray":
            return
        if ADDRESS_KEY not in st.session_state:
            st.session_state[ADDRESS_KEY] = os.environ.get(ENV_RAY_ADDRESS, "")
        address = st.text_input("Cluster address", key=ADDRESS_KEY, placeholder="head-node:6379",
                                help="The head node's address (host:port, or ray://host:10001). Empty: a Ray "
                                     "instance on this machine.")
        if st.button("Check the cluster", icon=":material/hub:"):
            st.session_state.pop(INFO_KEY, None)
            with st.spinner("Asking the cluster..."), guard("Reaching the Ray cluster"):
                st.session_state[INFO_KEY] = (address.strip(), describe_engine("ray", address.strip() or None))
        shown = st.session_state.get(INFO_KEY)
        if shown and shown[0] == address.strip():
            info = shown[1]
            alive = [n for n in info.nodes if n.alive]
            busy = f", {info.busy_cpus:g} busy" if info.busy_cpus is not None else ""
            st.caption(f"{len(alive)} node(s), {info.cpus:g} CPUs{busy}"
                       + (f" at {info.address}" if info.address else ""))
            st.dataframe([{"node": ("head " if n.is_head else "") + n.host, "id": n.node_id[:8], "CPUs": n.cpus,
                           "alive": n.alive} for n in info.nodes], hide_index=True)
            if info.running:
                st.caption("Running: " + ", ".join(info.running))
