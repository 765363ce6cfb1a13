package io.vhostd.vhost.backend;

import static io.vhostd.vhost.backend.BackendHarness.RAM_BYTES;
import static io.vhostd.vhost.backend.BackendHarness.RAM_UVA;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.vhost.proto.VhostUserConfig;
import io.vhostd.vhost.proto.VhostUserFeature;
import io.vhostd.vhost.proto.VhostUserHeader;
import io.vhostd.vhost.proto.VhostUserInflight;
import io.vhostd.vhost.proto.VhostUserLog;
import io.vhostd.vhost.proto.VhostUserMemRegMsg;
import io.vhostd.vhost.proto.VhostUserMemory;
import io.vhostd.vhost.proto.VhostUserMemoryRegion;
import io.vhostd.vhost.proto.VhostUserProtocolFeature;
import io.vhostd.vhost.proto.VhostUserRequest;
import io.vhostd.vhost.proto.VhostUserU64;
import io.vhostd.vhost.proto.VhostUserVringAddr;
import io.vhostd.vhost.proto.VhostUserVringFd;
import io.vhostd.vhost.proto.VhostUserVringState;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Malformed and illegal messages, table-driven. Each case runs on a fresh connection brought to a given state; the
 * back-end must answer with the right error reply (or none where the specification has none), close every fd the
 * message brought, count the error, and keep serving: a GET_FEATURES after it still answers.
 */
@Timeout(value = 20, unit = TimeUnit.SECONDS)
class VhostUserBackendMalformedTest {
    private static final int VERSION = VhostUserHeader.VHOST_USER_VERSION;
    private static final int NEED_REPLY = VhostUserHeader.VHOST_USER_NEED_REPLY_MASK;

    /** How far the connection is set up before the case's message. */
    enum Level {
        /** Nothing sent yet. */
        FRESH,
        /** QEMU's handshake: protocol features negotiated (all offered), SET_OWNER. */
        OWNED,
        /** OWNED + SET_FEATURES + guest RAM (ADD_MEM_REG). */
        READY,
        /** Both rings running. */
        RUNNING
    }

    /** What the back-end must send back. */
    enum Expect {
        /** Nothing: the next reply is the GET_FEATURES of the sync. */
        NONE,
        /** REPLY_ACK u64 1. */
        ACK_FAILURE,
        /** The request's own reply, empty (size 0): the failure form of GET_* replies. */
        EMPTY_REPLY
    }

    /** What the case gets to send with: the harness and probe fds whose closing is checked. */
    static final class Ctx {
        final BackendHarness h;
        final TestFrontEnd fe;
        final List<int[]> probes = new ArrayList<>();

        Ctx(BackendHarness h) {
            this.h = h;
            this.fe = h.frontEnd;
        }

        /** An fd to send whose every copy must be closed after the message: one end of a socketpair. */
        int probe() {
            int[] pair = Socket.socketpair(Socket.SOCK_STREAM);
            probes.add(pair);
            return pair[0];
        }
    }

    record Case(String name, Level level, Expect expect, int requestId, Consumer<Ctx> send) {
        @Override
        public String toString() {
            return name;
        }
    }

    private static Case c(String name, Level level, Expect expect, VhostUserRequest request, Consumer<Ctx> send) {
        return new Case(name, level, expect, request.id(), send);
    }

    private static byte[] bytes(int n) {
        return new byte[n];
    }

    static Stream<Arguments> cases() {
        VhostUserMemoryRegion ram = BackendHarness.ramRegion();
        List<Case> cases = List.of(
                // ---- wrong payload size ----
                c(
                        "SET_VRING_NUM with a 4-byte payload",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_NUM,
                        x -> x.fe.sendRaw(8, VERSION | NEED_REPLY, 4, bytes(4))),
                c(
                        "GET_FEATURES with an 8-byte payload",
                        Level.FRESH,
                        Expect.EMPTY_REPLY,
                        VhostUserRequest.VHOST_USER_GET_FEATURES,
                        x -> x.fe.sendRaw(1, VERSION, 8, bytes(8))),
                c(
                        "GET_VRING_BASE with a 4-byte payload",
                        Level.OWNED,
                        Expect.EMPTY_REPLY,
                        VhostUserRequest.VHOST_USER_GET_VRING_BASE,
                        x -> x.fe.sendRaw(11, VERSION, 4, bytes(4))),
                c(
                        "SET_FEATURES with a 16-byte payload",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_FEATURES,
                        x -> x.fe.sendRaw(2, VERSION | NEED_REPLY, 16, bytes(16))),
                c(
                        "SET_MEM_TABLE whose nregions disagrees with its size",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_MEM_TABLE,
                        x -> {
                            byte[] p = new byte[40];
                            MemorySegment s = MemorySegment.ofArray(p);
                            VhostUserMemory.of(List.of(ram)).encode(s);
                            s.set(ValueLayout.JAVA_INT_UNALIGNED, 0, 2);
                            x.fe.sendRaw(5, VERSION | NEED_REPLY, 40, p, x.probe());
                        }),
                c(
                        "SET_MEM_TABLE with 9 regions",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_MEM_TABLE,
                        x -> {
                            byte[] p = new byte[8 + 9 * 32];
                            MemorySegment.ofArray(p).set(ValueLayout.JAVA_INT_UNALIGNED, 0, 9);
                            x.fe.sendRaw(5, VERSION | NEED_REPLY, p.length, p);
                        }),
                c(
                        "SET_VRING_ADDR truncated to 32 bytes",
                        Level.READY,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_ADDR,
                        x -> x.fe.sendRaw(9, VERSION | NEED_REPLY, 32, bytes(32))),
                c(
                        "GET_CONFIG whose size disagrees with the payload",
                        Level.OWNED,
                        Expect.EMPTY_REPLY,
                        VhostUserRequest.VHOST_USER_GET_CONFIG,
                        x -> {
                            byte[] p = new byte[12 + 8];
                            MemorySegment.ofArray(p).set(ValueLayout.JAVA_INT_UNALIGNED, 4, 60);
                            x.fe.sendRaw(24, VERSION, p.length, p);
                        }),

                // ---- missing fd ----
                c(
                        "SET_VRING_KICK without its fd",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_KICK,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_KICK, true, new VhostUserVringFd(0, false))),
                c(
                        "SET_VRING_CALL without its fd",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_CALL,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_CALL, true, new VhostUserVringFd(1, false))),
                c(
                        "ADD_MEM_REG without its fd",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_ADD_MEM_REG,
                        x -> x.fe.send(VhostUserRequest.VHOST_USER_ADD_MEM_REG, true, VhostUserMemRegMsg.of(ram))),
                c(
                        "SET_MEM_TABLE with fewer fds than regions",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_MEM_TABLE,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_MEM_TABLE,
                                true,
                                VhostUserMemory.of(List.of(
                                        new VhostUserMemoryRegion(0, 0x10000, RAM_UVA, 0),
                                        new VhostUserMemoryRegion(0x10000, 0x10000, RAM_UVA + 0x10000, 0x10000))),
                                x.probe())),
                c(
                        "SET_BACKEND_REQ_FD without its fd",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_BACKEND_REQ_FD,
                        x -> x.fe.send(VhostUserRequest.VHOST_USER_SET_BACKEND_REQ_FD, true, null)),

                // ---- extra fds ----
                c(
                        "SET_VRING_CALL with two fds",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_CALL,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_CALL,
                                true,
                                new VhostUserVringFd(0, false),
                                x.probe(),
                                x.probe())),
                c(
                        "SET_VRING_KICK with NOFD and an fd",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_KICK,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_KICK,
                                true,
                                new VhostUserVringFd(0, true),
                                x.probe())),
                c(
                        "ADD_MEM_REG with two fds",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_ADD_MEM_REG,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_ADD_MEM_REG,
                                true,
                                VhostUserMemRegMsg.of(ram),
                                x.h.memfd,
                                x.probe())),
                c(
                        "SET_MEM_TABLE with more fds than regions",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_MEM_TABLE,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_MEM_TABLE,
                                true,
                                VhostUserMemory.of(List.of(ram)),
                                x.h.memfd,
                                x.probe())),
                c(
                        "GET_QUEUE_NUM with an fd",
                        Level.OWNED,
                        Expect.EMPTY_REPLY,
                        VhostUserRequest.VHOST_USER_GET_QUEUE_NUM,
                        x -> x.fe.send(VhostUserRequest.VHOST_USER_GET_QUEUE_NUM, false, null, x.probe())),
                c(
                        "SET_OWNER with an fd",
                        Level.FRESH,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_OWNER,
                        x -> x.fe.send(VhostUserRequest.VHOST_USER_SET_OWNER, true, null, x.probe())),
                c(
                        "REM_MEM_REG with two fds",
                        Level.READY,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_REM_MEM_REG,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_REM_MEM_REG,
                                true,
                                VhostUserMemRegMsg.of(ram),
                                x.probe(),
                                x.probe())),
                c(
                        "40 fds: more than the receive buffer holds",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_CALL,
                        x -> {
                            int[] fds = new int[40];
                            for (int i = 0; i < fds.length; i++) {
                                fds[i] = x.probe();
                            }
                            x.fe.send(
                                    VhostUserRequest.VHOST_USER_SET_VRING_CALL,
                                    true,
                                    new VhostUserVringFd(0, false),
                                    fds);
                        }),

                // ---- unknown requests ----
                new Case(
                        "unknown request 99 with NEED_REPLY",
                        Level.FRESH,
                        Expect.ACK_FAILURE,
                        99,
                        x -> x.fe.sendRaw(99, VERSION | NEED_REPLY, 0, bytes(0))),
                new Case(
                        "unknown request 99 with a payload and an fd",
                        Level.OWNED,
                        Expect.NONE,
                        99,
                        x -> x.fe.sendRaw(99, VERSION, 16, bytes(16), x.probe())),
                new Case(
                        "request 0 (VHOST_USER_NONE) with NEED_REPLY",
                        Level.FRESH,
                        Expect.ACK_FAILURE,
                        0,
                        x -> x.fe.sendRaw(0, VERSION | NEED_REPLY, 0, bytes(0))),

                // ---- header ----
                c(
                        "version 0 with NEED_REPLY",
                        Level.FRESH,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_OWNER,
                        x -> x.fe.sendRaw(3, NEED_REPLY, 0, bytes(0))),
                c(
                        "REPLY flag on a request",
                        Level.FRESH,
                        Expect.EMPTY_REPLY,
                        VhostUserRequest.VHOST_USER_GET_QUEUE_NUM,
                        x -> x.fe.sendRaw(17, VERSION | VhostUserHeader.VHOST_USER_REPLY_MASK, 0, bytes(0))),
                c(
                        "reserved flag bits",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_NUM,
                        x -> x.fe.sendRaw(8, VERSION | NEED_REPLY | 0x100, 8, bytes(8))),
                c(
                        "payload of 5000 bytes (over the limit)",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_NUM,
                        x -> x.fe.sendRaw(8, VERSION | NEED_REPLY, 5000, bytes(5000))),
                c(
                        "GET_FEATURES with a 70000-byte payload and an fd",
                        Level.FRESH,
                        Expect.EMPTY_REPLY,
                        VhostUserRequest.VHOST_USER_GET_FEATURES,
                        x -> x.fe.sendRaw(1, VERSION, 70000, bytes(70000), x.probe())),

                // ---- state: owner ----
                c(
                        "SET_VRING_NUM before SET_OWNER",
                        Level.FRESH,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_NUM,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_NUM, true, new VhostUserVringState(0, 64))),
                c(
                        "GET_VRING_BASE before SET_OWNER",
                        Level.FRESH,
                        Expect.EMPTY_REPLY,
                        VhostUserRequest.VHOST_USER_GET_VRING_BASE,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_GET_VRING_BASE, false, new VhostUserVringState(0, 0))),
                c(
                        "SET_MEM_TABLE before SET_OWNER",
                        Level.FRESH,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_MEM_TABLE,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_MEM_TABLE,
                                true,
                                VhostUserMemory.of(List.of(ram)),
                                x.probe())),
                c(
                        "SET_VRING_CALL before SET_OWNER",
                        Level.FRESH,
                        Expect.NONE,
                        VhostUserRequest.VHOST_USER_SET_VRING_CALL,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_CALL,
                                false,
                                new VhostUserVringFd(0, false),
                                x.probe())),
                c(
                        "SET_OWNER twice",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_OWNER,
                        x -> x.fe.send(VhostUserRequest.VHOST_USER_SET_OWNER, true, null)),

                // ---- state: features ----
                c(
                        "SET_FEATURES with bits not offered",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_FEATURES,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_FEATURES,
                                true,
                                new VhostUserU64(x.h.backend.offeredFeatures() | 1L << 40))),
                c(
                        "SET_FEATURES with VHOST_F_LOG_ALL (not offered)",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_FEATURES,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_FEATURES,
                                true,
                                new VhostUserU64(
                                        x.h.backend.offeredFeatures() | VhostUserFeature.VHOST_F_LOG_ALL_MASK))),
                c(
                        "SET_PROTOCOL_FEATURES with LOG_SHMFD (not offered)",
                        Level.FRESH,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_PROTOCOL_FEATURES,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_PROTOCOL_FEATURES,
                                true,
                                new VhostUserU64(VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_LOG_SHMFD_MASK))),
                c(
                        "GET_QUEUE_NUM before MQ is negotiated",
                        Level.FRESH,
                        Expect.EMPTY_REPLY,
                        VhostUserRequest.VHOST_USER_GET_QUEUE_NUM,
                        x -> x.fe.send(VhostUserRequest.VHOST_USER_GET_QUEUE_NUM, false, null)),
                c(
                        "GET_CONFIG before CONFIG is negotiated",
                        Level.FRESH,
                        Expect.EMPTY_REPLY,
                        VhostUserRequest.VHOST_USER_GET_CONFIG,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_GET_CONFIG, false, new VhostUserConfig(0, 8, 0, bytes(8)))),
                c(
                        "GET_INFLIGHT_FD for more queues than the device has",
                        Level.OWNED,
                        Expect.EMPTY_REPLY,
                        VhostUserRequest.VHOST_USER_GET_INFLIGHT_FD,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_GET_INFLIGHT_FD,
                                true,
                                new VhostUserInflight(0, 0, 3, 128))),
                c(
                        "GET_INFLIGHT_FD with a split queue size that is not a power of two",
                        Level.OWNED,
                        Expect.EMPTY_REPLY,
                        VhostUserRequest.VHOST_USER_GET_INFLIGHT_FD,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_GET_INFLIGHT_FD,
                                true,
                                new VhostUserInflight(0, 0, 2, 100))),
                c(
                        "SET_INFLIGHT_FD whose mmap_size is below num_queues x queue_size regions",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_INFLIGHT_FD,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_INFLIGHT_FD,
                                true,
                                new VhostUserInflight(4096, 0, 2, 128),
                                x.probe())),
                c(
                        "SET_LOG_BASE with an fd (LOG_SHMFD not offered)",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_LOG_BASE,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_LOG_BASE, true, new VhostUserLog(4096, 0), x.probe())),
                c(
                        "SET_LOG_FD",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_LOG_FD,
                        x -> x.fe.send(VhostUserRequest.VHOST_USER_SET_LOG_FD, true, null, x.probe())),
                c(
                        "VRING_KICK (INBAND_NOTIFICATIONS not offered)",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_VRING_KICK,
                        x -> x.fe.send(VhostUserRequest.VHOST_USER_VRING_KICK, true, new VhostUserVringState(0, 0))),
                c(
                        "SET_CONFIG (the config space is read-only)",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_CONFIG,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_CONFIG, true, new VhostUserConfig(0, 4, 0, bytes(4)))),
                c(
                        "GET_CONFIG outside the config space",
                        Level.OWNED,
                        Expect.EMPTY_REPLY,
                        VhostUserRequest.VHOST_USER_GET_CONFIG,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_GET_CONFIG,
                                false,
                                new VhostUserConfig(50, 20, 0, bytes(20)))),
                c(
                        "SET_STATUS wider than a u8",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_STATUS,
                        x -> x.fe.send(VhostUserRequest.VHOST_USER_SET_STATUS, true, new VhostUserU64(0x100))),

                // ---- queue index ----
                c(
                        "SET_VRING_NUM for queue 2 of 2",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_NUM,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_NUM, true, new VhostUserVringState(2, 64))),
                c(
                        "GET_VRING_BASE for queue 5 of 2",
                        Level.OWNED,
                        Expect.EMPTY_REPLY,
                        VhostUserRequest.VHOST_USER_GET_VRING_BASE,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_GET_VRING_BASE, false, new VhostUserVringState(5, 0))),
                c(
                        "SET_VRING_CALL for queue 3 of 2, with its fd",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_CALL,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_CALL,
                                true,
                                new VhostUserVringFd(3, false),
                                x.probe())),
                c(
                        "SET_VRING_ENABLE for queue 0xffffffff",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_ENABLE,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_ENABLE, true, new VhostUserVringState(-1, 1))),

                // ---- ring values ----
                c(
                        "ring size 100 (not a power of two)",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_NUM,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_NUM, true, new VhostUserVringState(0, 100))),
                c(
                        "ring size 0",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_NUM,
                        x -> x.fe.send(VhostUserRequest.VHOST_USER_SET_VRING_NUM, true, new VhostUserVringState(0, 0))),
                c(
                        "ring size 65536",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_NUM,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_NUM, true, new VhostUserVringState(0, 65536))),
                c(
                        "SET_VRING_BASE with reserved bits 16-31",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_BASE,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_BASE,
                                true,
                                new VhostUserVringState(0, 0x1_0000))),
                c(
                        "SET_VRING_ENABLE with 2",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_ENABLE,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_ENABLE, true, new VhostUserVringState(0, 2))),
                c(
                        "SET_VRING_ADDR outside guest memory",
                        Level.READY,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_ADDR,
                        x -> {
                            long uva = RAM_UVA + RAM_BYTES;
                            x.fe.send(
                                    VhostUserRequest.VHOST_USER_SET_VRING_ADDR,
                                    true,
                                    new VhostUserVringAddr(0, 0, uva, uva + 0x2000, uva + 0x1000, 0));
                        }),
                c(
                        "SET_VRING_ADDR whose descriptor table crosses the end of memory",
                        Level.READY,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_ADDR,
                        x -> {
                            assertEquals(
                                    0,
                                    x.fe.ack(
                                            VhostUserRequest.VHOST_USER_SET_VRING_NUM,
                                            new VhostUserVringState(0, 256)));
                            long desc = RAM_UVA + RAM_BYTES - 0x800;
                            long ok = RAM_UVA + 0x1000;
                            x.fe.send(
                                    VhostUserRequest.VHOST_USER_SET_VRING_ADDR,
                                    true,
                                    new VhostUserVringAddr(0, 0, desc, ok + 0x2000, ok, 0));
                        }),
                c(
                        "SET_VRING_ADDR before any memory",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_ADDR,
                        x -> x.fe.send(VhostUserRequest.VHOST_USER_SET_VRING_ADDR, true, BackendHarness.ringAddr(0))),
                c(
                        "SET_VRING_ADDR misaligned",
                        Level.READY,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_ADDR,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_ADDR,
                                true,
                                new VhostUserVringAddr(0, 0, RAM_UVA + 8, RAM_UVA + 0x2000, RAM_UVA + 0x1000, 0))),
                c(
                        "SET_VRING_NUM while the ring runs",
                        Level.RUNNING,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_NUM,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_NUM, true, new VhostUserVringState(0, 64))),
                c(
                        "SET_VRING_BASE while the ring runs",
                        Level.RUNNING,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_SET_VRING_BASE,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_SET_VRING_BASE, true, new VhostUserVringState(0, 9))),

                // ---- memory ----
                c(
                        "ADD_MEM_REG larger than its fd's file",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_ADD_MEM_REG,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_ADD_MEM_REG,
                                true,
                                VhostUserMemRegMsg.of(new VhostUserMemoryRegion(0, 2 * RAM_BYTES, RAM_UVA, 0)),
                                x.h.memfd)),
                c(
                        "ADD_MEM_REG overlapping guest memory",
                        Level.READY,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_ADD_MEM_REG,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_ADD_MEM_REG,
                                true,
                                VhostUserMemRegMsg.of(
                                        new VhostUserMemoryRegion(0x8000, 0x1000, RAM_UVA + RAM_BYTES, 0)),
                                x.h.memfd)),
                c(
                        "ADD_MEM_REG of size 0",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_ADD_MEM_REG,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_ADD_MEM_REG,
                                true,
                                VhostUserMemRegMsg.of(new VhostUserMemoryRegion(0, 0, RAM_UVA, 0)),
                                x.probe())),
                c(
                        "ADD_MEM_REG with a socket instead of memory",
                        Level.OWNED,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_ADD_MEM_REG,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_ADD_MEM_REG, true, VhostUserMemRegMsg.of(ram), x.probe())),
                c(
                        "REM_MEM_REG of an unknown region",
                        Level.READY,
                        Expect.ACK_FAILURE,
                        VhostUserRequest.VHOST_USER_REM_MEM_REG,
                        x -> x.fe.send(
                                VhostUserRequest.VHOST_USER_REM_MEM_REG,
                                true,
                                VhostUserMemRegMsg.of(new VhostUserMemoryRegion(0, 0x1000, RAM_UVA, 0)))));
        return cases.stream().map(k -> Arguments.of(k));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void shouldAnswerWithTheProtocolErrorAndKeepServingWhenMessageIsMalformed(Case k) {
        try (BackendHarness h = new BackendHarness()) {
            setUp(h, k.level);
            long errorsBefore = h.backend.protocolErrors();
            int memRegionsBefore = h.device.memory().regionCount();
            int runningBefore = h.device.running().size();
            Ctx x = new Ctx(h);

            k.send.accept(x);
            // our copies of the sent fds: after these are closed only the back-end's could keep a probe open
            for (int[] pair : x.probes) {
                Unistd.close(pair[0]);
            }
            switch (k.expect) {
                case NONE -> {}
                case ACK_FAILURE -> assertEquals(1, h.frontEnd.replyU64(k.requestId), "REPLY_ACK failure");
                case EMPTY_REPLY -> assertEquals(0, h.frontEnd.reply(k.requestId).length, "empty reply");
            }

            // still serving; and nothing else was sent (the next message is this reply)
            assertEquals(h.backend.offeredFeatures(), h.frontEnd.sync());
            assertEquals(errorsBefore + 1, h.backend.protocolErrors(), "counted once");
            for (int[] pair : x.probes) {
                assertTrue(BackendHarness.peerClosed(pair[1]), "fd sent with the message closed by the back-end");
                Unistd.close(pair[1]);
            }
            assertEquals(memRegionsBefore, h.device.memory().regionCount(), "memory unchanged");
            assertEquals(runningBefore, h.device.running().size(), "running rings unchanged");
            if (k.level == Level.OWNED || k.level == Level.FRESH) {
                assertEquals(-1, h.device.negotiated(), "no features negotiated by a failed message");
            }
        }
    }

    private static void setUp(BackendHarness h, Level level) {
        if (level == Level.FRESH) {
            return;
        }
        h.handshake();
        if (level == Level.READY) {
            TestFrontEnd fe = h.frontEnd;
            assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_FEATURES, new VhostUserU64(fe.sync())));
            assertEquals(
                    0,
                    fe.ack(
                            VhostUserRequest.VHOST_USER_ADD_MEM_REG,
                            VhostUserMemRegMsg.of(BackendHarness.ramRegion()),
                            h.memfd));
        } else if (level == Level.RUNNING) {
            h.startRings(false, 0);
            assertEquals(2, h.device.running().size());
        }
    }

    // ---- end of stream inside a message: run() ends, the device is told, nothing leaks ----

    @Test
    void shouldDisconnectWhenHeaderIsTruncatedThenEof() {
        BackendHarness h = new BackendHarness();
        h.handshake();
        int[] probe = Socket.socketpair(Socket.SOCK_STREAM);
        // 6 of the 12 header bytes, with an fd, then end of stream
        try (VhostUserConnection raw = new VhostUserConnection(h.frontEnd.socketFd())) {
            raw.sendRaw(new byte[6], probe[0]);
        }
        Unistd.close(probe[0]);
        h.frontEnd.shutdownWrite();
        h.awaitBackendEnd();
        assertTrue(BackendHarness.peerClosed(probe[1]), "fd of the partial message closed");
        Unistd.close(probe[1]);
        h.close();
    }

    @Test
    void shouldDisconnectWhenPayloadIsTruncatedThenEof() {
        BackendHarness h = new BackendHarness();
        h.handshake();
        h.frontEnd.sendRaw(8, VERSION, 8, bytes(4));
        h.frontEnd.shutdownWrite();
        h.awaitBackendEnd();
        h.close();
    }

    @Test
    void shouldReturnFalseWhenFrontEndClosedBeforeAnyMessage() {
        int[] pair = Socket.socketpair(Socket.SOCK_STREAM);
        FakeVhostUserDevice device = new FakeVhostUserDevice();
        VhostUserBackend backend = new VhostUserBackend(pair[0], device, "direct");
        Unistd.close(pair[1]);
        assertFalse(backend.handleOneMessage());
        backend.close();
        assertEquals(List.of("fdReceived connection 0", "disconnected", "fdReleased connection 0"), device.calls());
        backend.close();
        assertEquals(1, device.count("disconnected"), "close is idempotent");
    }
}
