"""P4Runtime: push the pipeline, program a :class:`~ctcm.targets.program.Program`
and read the counters of any device with a P4Runtime server (bmv2's
simple_switch_grpc, Stratum, a SmartNIC's agent).

What is programmed is :mod:`ctcm.targets.program`'s (the Thrift transport in
:mod:`ctcm.targets.bmv2` programs the same Program); this module only says how
over P4Runtime, with every P4 object's id looked up by its name in the P4Info.
Registers are not read here: bmv2's P4Runtime server answers UNIMPLEMENTED
(p4lang/PI#376), so a bmv2 switch's registers are read over its Thrift port.

Client: the P4Runtime project's own generated Python code (PyPI ``p4runtime``:
``p4.v1.p4runtime_pb2``) over ``grpcio``: the protos the P4Runtime spec
publishes, the layer p4lang/PI's and p4testgen's PTF support use, wheels only.
Chosen over finsy (a well-kept, higher-level client) because the PTF tests are
synchronous unittest code and need four plain RPCs (arbitration, pipeline
push, Write, Read): finsy's asyncio controller would be a framework around
them; and over p4runtime-shell, which is an interactive shell whose module
state is global (one connection per process). That package's generated code predates
protobuf 4's runtime checks: with the C (upb) runtime its import fails
("Descriptors cannot be created directly"), so :func:`protos` selects
protobuf's pure-Python runtime before the first protobuf import (a control
plane sends a few hundred messages: its speed does not matter here).
"""

from __future__ import annotations

import os
import queue
import sys
import time

from ctcm.targets.bmv2 import TargetError
from ctcm.targets.program import COUNTERS, OPTIONS, PORT_MAP, SET_OPTIONS, SET_PEER, Program, counter_keys

__all__ = ["protos", "P4RuntimeClient"]

_PURE = "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"
_MSG = "P4Runtime client not installed: pip install -e '.[p4runtime]' (p4runtime, grpcio)"


def protos():
    """``(p4runtime_pb2, p4runtime_pb2_grpc, p4info_pb2, text_format, grpc)``, imported
    with protobuf's pure-Python runtime (see the module doc); a one-line error
    when they are missing or protobuf was already loaded with another runtime."""
    if "google.protobuf" not in sys.modules:
        os.environ.setdefault(_PURE, "python")
    try:
        import grpc
        from google.protobuf import text_format
        from p4.config.v1 import p4info_pb2
        from p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc
    except ImportError as e:
        raise TargetError(f"{_MSG} ({e})") from None
    except TypeError as e:  # the generated code under protobuf's C runtime
        why = f"it is {os.environ[_PURE]!r} here" if os.environ.get(_PURE, "python") != "python" else \
            "protobuf was imported with another runtime before"
        raise TargetError(f"the p4runtime protos need {_PURE}=python ({why}): {str(e).splitlines()[0]}") from None
    return p4runtime_pb2, p4runtime_pb2_grpc, p4info_pb2, text_format, grpc


def _canon(v: int, bits: int, what: str) -> bytes:
    """A value as P4Runtime's canonical bytestring (no leading zero bytes)."""
    v = int(v)
    if v < 0 or v >> bits:
        raise TargetError(f"{what}: {v} does not fit in {bits} bits")
    return v.to_bytes(max(1, (v.bit_length() + 7) // 8), "big")


class P4RuntimeClient:
    """One P4Runtime connection to device ``device_id`` at ``address`` (host:port),
    as the primary controller (the newest connection wins: its election id is
    the time). ``p4info``: the P4Info text file (``make p4``'s ctcm.p4info.txtpb)."""

    def __init__(self, address: str, device_id: int, p4info: str, timeout: float = 10.0):
        self.address, self.device_id, self.p4info_file, self.timeout = address, int(device_id), p4info, timeout
        self._channel = self._stub = self._stream = None
        self._requests: queue.Queue | None = None
        self._info = None

    # -- P4Info -------------------------------------------------------------------------
    def info(self):
        if self._info is None:
            _pb, _g, p4info_pb2, text_format, _grpc = protos()
            try:
                with open(self.p4info_file) as f:
                    self._info = text_format.Parse(f.read(), p4info_pb2.P4Info())
            except OSError as e:
                raise TargetError(f"{self.p4info_file}: {e.strerror} (run `make p4`: it writes the P4Info)") from None
            except text_format.ParseError as e:
                raise TargetError(f"{self.p4info_file}: not a P4Info ({e})") from None
        return self._info

    def _find(self, kind: str, name: str):
        for obj in getattr(self.info(), kind):
            if name in (obj.preamble.name, obj.preamble.alias):
                return obj
        raise TargetError(f"{self.p4info_file}: no {kind[:-1]} {name}")

    def _action(self, name: str, values) -> object:
        pb = protos()[0]
        a = self._find("actions", name)
        if len(a.params) != len(values):
            raise TargetError(f"{name} takes {len(a.params)} parameters, the config gives {len(values)}")
        return pb.Action(action_id=a.preamble.id, params=[
            pb.Action.Param(param_id=p.id, value=_canon(v, p.bitwidth, f"{name}({p.name})"))
            for p, v in zip(a.params, values)])

    # -- connection ---------------------------------------------------------------------
    def connect(self) -> None:
        """Open the channel and become primary (StreamChannel arbitration)."""
        if self._stub is not None:
            return
        pb, pb_grpc, _i, _t, grpc = protos()
        self._channel = grpc.insecure_channel(self.address)
        try:
            grpc.channel_ready_future(self._channel).result(timeout=self.timeout)
        except grpc.FutureTimeoutError:
            self.close()
            raise TargetError(f"no P4Runtime server answers at {self.address} in {self.timeout:.0f} s") from None
        self._stub = pb_grpc.P4RuntimeStub(self._channel)
        self._election = pb.Uint128(high=0, low=time.time_ns())
        self._requests = queue.Queue()
        self._requests.put(pb.StreamMessageRequest(arbitration=pb.MasterArbitrationUpdate(
            device_id=self.device_id, election_id=self._election)))
        self._stream = self._stub.StreamChannel(iter(self._requests.get, None))
        try:
            for resp in self._stream:
                if resp.HasField("arbitration"):
                    if resp.arbitration.status.code != 0:  # not primary: a newer controller is connected
                        raise TargetError(f"P4Runtime {self.address} device {self.device_id}: not primary "
                                          f"({resp.arbitration.status.message})")
                    return
        except grpc.RpcError as e:
            self.close()
            raise TargetError(f"P4Runtime {self.address} device {self.device_id}: {_err(e)}") from None
        except TargetError:
            self.close()
            raise
        self.close()
        raise TargetError(f"P4Runtime {self.address}: the stream closed before arbitration")

    def close(self) -> None:
        if self._requests is not None:
            self._requests.put(None)
        if self._stream is not None:
            self._stream.cancel()
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = self._stream = self._requests = None

    def _call(self, what: str, fn, req):
        grpc = protos()[4]
        try:
            return fn(req, timeout=self.timeout)
        except grpc.RpcError as e:
            raise TargetError(f"P4Runtime {what} at {self.address}: {_err(e)}") from None

    def _write(self, what: str, *updates) -> None:
        if not updates:
            return
        self.connect()
        pb = protos()[0]
        self._call(what, self._stub.Write, pb.WriteRequest(device_id=self.device_id, election_id=self._election,
                                                          updates=list(updates)))

    def _read(self, what: str, entity) -> list:
        self.connect()
        pb = protos()[0]
        grpc = protos()[4]
        out = []
        try:
            for resp in self._stub.Read(pb.ReadRequest(device_id=self.device_id, entities=[entity]),
                                        timeout=self.timeout):
                out.extend(resp.entities)
        except grpc.RpcError as e:
            raise TargetError(f"P4Runtime read of {what} at {self.address}: {_err(e)}") from None
        return out

    # -- what a control plane does ------------------------------------------------------------
    def set_pipeline(self, device_config: str) -> None:
        """SetForwardingPipelineConfig (VERIFY_AND_COMMIT): the P4Info and the
        target's compiled program (``device_config``: bmv2's JSON)."""
        self.connect()
        pb = protos()[0]
        try:
            with open(device_config, "rb") as f:
                blob = f.read()
        except OSError as e:
            raise TargetError(f"{device_config}: {e.strerror}") from None
        req = pb.SetForwardingPipelineConfigRequest(
            device_id=self.device_id, election_id=self._election,
            action=pb.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT,
            config=pb.ForwardingPipelineConfig(p4info=self.info(), p4_device_config=blob))
        self._call("SetForwardingPipelineConfig", self._stub.SetForwardingPipelineConfig, req)

    def program(self, prog: Program) -> None:
        """Port map (replacing every entry there), clone sessions, options."""
        pb = protos()[0]
        table = self._find("tables", PORT_MAP)
        (key,) = table.match_fields
        old = self._read(PORT_MAP, pb.Entity(table_entry=pb.TableEntry(table_id=table.preamble.id)))
        self._write(f"delete {PORT_MAP}", *(pb.Update(type=pb.Update.DELETE, entity=e) for e in old))
        self._write(f"insert {PORT_MAP}", *(pb.Update(type=pb.Update.INSERT, entity=pb.Entity(
            table_entry=pb.TableEntry(
                table_id=table.preamble.id,
                match=[pb.FieldMatch(field_id=key.id, exact=pb.FieldMatch.Exact(
                    value=_canon(e.port, key.bitwidth, f"{PORT_MAP} key")))],
                action=pb.TableAction(action=self._action(SET_PEER, e.action_args)))))
            for e in prog.port_map))
        for session, port in prog.mirror_sessions:
            ent = pb.Entity(packet_replication_engine_entry=pb.PacketReplicationEngineEntry(
                clone_session_entry=pb.CloneSessionEntry(session_id=session,
                                                         replicas=[pb.Replica(egress_port=port, instance=1)])))
            try:
                self._write(f"insert clone session {session}", pb.Update(type=pb.Update.INSERT, entity=ent))
            except TargetError as e:
                if "ALREADY_EXISTS" not in str(e):
                    raise
                self._write(f"modify clone session {session}", pb.Update(type=pb.Update.MODIFY, entity=ent))
        self._write(f"default action of {OPTIONS}", pb.Update(type=pb.Update.MODIFY, entity=pb.Entity(
            table_entry=pb.TableEntry(table_id=self._find("tables", OPTIONS).preamble.id, is_default_action=True,
                                      action=pb.TableAction(action=self._action(SET_OPTIONS, prog.options))))))

    def _counter_entity(self, index: int | None = None, zero: bool = False):
        pb = protos()[0]
        e = pb.CounterEntry(counter_id=self._find("counters", COUNTERS).preamble.id)
        if index is not None:
            e.index.index = index
        if zero:
            e.data.packet_count = 0
            e.data.byte_count = 0
        return pb.Entity(counter_entry=e)

    def counters(self) -> dict[str, int]:
        """The counter array by snapshot key (one read of every index)."""
        got = {e.counter_entry.index.index: e.counter_entry.data.packet_count
               for e in self._read(COUNTERS, self._counter_entity())}
        return {key: got.get(i, 0) for i, key in counter_keys().items()}

    def reset_counters(self) -> None:
        """Every index of the counter array back to zero."""
        pb = protos()[0]
        self._write(f"reset {COUNTERS}", *(pb.Update(type=pb.Update.MODIFY, entity=self._counter_entity(i, True))
                                          for i in counter_keys()))


def _err(e) -> str:
    """One line from a gRPC error: its code and details, and for a Write the
    per-update errors P4Runtime puts in the status details (p4.v1.Error)."""
    code = e.code().name if hasattr(e, "code") and e.code() else "error"
    text = (e.details() if hasattr(e, "details") else "") or ""
    errs = []
    for k, v in (e.trailing_metadata() or ()) if hasattr(e, "trailing_metadata") else ():
        if k == "grpc-status-details-bin":
            try:
                from google.rpc import status_pb2

                pb = protos()[0]
                st = status_pb2.Status.FromString(v)
                for d in st.details:
                    er = pb.Error()
                    if d.Unpack(er) and er.canonical_code:
                        errs.append(f"{_code_name(er.canonical_code)} {er.message}".strip())
            except Exception:  # details in a form not known here: the code and text say enough
                pass
    return "; ".join(filter(None, [f"{code} {text.splitlines()[0] if text else ''}".strip(), *errs]))


def _code_name(n: int) -> str:
    grpc = protos()[4]
    return next((c.name for c in grpc.StatusCode if c.value[0] == n), str(n))
