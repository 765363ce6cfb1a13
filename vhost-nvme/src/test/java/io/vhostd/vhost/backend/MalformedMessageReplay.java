package io.vhostd.vhost.backend;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.vhost.proto.VhostUserMemRegMsg;
import io.vhostd.vhost.proto.VhostUserRequest;
import io.vhostd.vhost.proto.VhostUserU64;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.params.provider.Arguments;
import org.opentest4j.AssertionFailedError;

/**
 * Replays the table of {@link VhostUserBackendMalformedTest} against a back-end in another process, reached through
 * its listening unix socket (issue #3 "Hostile input": dist's {@code ControllerIsolationIT} aims it at one controller
 * of a real slave while another controller serves I/O).
 *
 * <p>Each case runs on a fresh connection brought to the case's level, as in the unit test. What is checked is what
 * can be seen from outside the process: the answer the table expects (REPLY_ACK failure, an empty reply, or none),
 * the back-end still answering GET_FEATURES after it, and every fd sent with the message closed by the back-end. The
 * back-end's internal state (error counters, device calls) is the unit test's business. Every wait for the back-end
 * is bounded by {@code replyTimeoutMs}, so a hung back-end shows up as a problem, not as a hung test.
 */
public final class MalformedMessageReplay {

    /**
     * What one case did.
     *
     * @param name the case's name in the table
     * @param expected what the table expects ({@code ACK_FAILURE}, {@code EMPTY_REPLY} or {@code NONE})
     * @param answer what came back, e.g. {@code "ACK 1"}, {@code "EMPTY_REPLY"}, {@code "NONE"}, {@code "EOF"}
     * @param problems every way the answer differs from the table; empty when the case passed
     */
    public record Outcome(String name, String expected, String answer, List<String> problems) {

        /** True when the back-end answered as the table expects and kept serving. */
        public boolean passed() {
            return problems.isEmpty();
        }

        @Override
        public String toString() {
            return (passed() ? "PASS " : "FAIL ") + name + ": expected " + expected + ", got " + answer
                    + (passed() ? "" : " " + problems);
        }
    }

    /** What the remote back-end offers, read once on a probe connection. */
    private record Offer(long features, long protocolFeatures, int queues, int memSlots) {}

    private final String socketPath;
    private final int replyTimeoutMs;
    private final Offer offer;

    private MalformedMessageReplay(String socketPath, int replyTimeoutMs, Offer offer) {
        this.socketPath = socketPath;
        this.replyTimeoutMs = replyTimeoutMs;
        this.offer = offer;
    }

    /**
     * Connects once to read what the back-end offers (GET_FEATURES, protocol features, queue count, memory slots),
     * which the table's messages are then built from.
     *
     * @param socketPath the back-end's listening vhost-user socket
     * @param replyTimeoutMs the longest wait for any one answer
     */
    public static MalformedMessageReplay connect(String socketPath, int replyTimeoutMs) {
        try (TestFrontEnd fe = new TestFrontEnd(dial(socketPath))) {
            MalformedMessageReplay probe = new MalformedMessageReplay(socketPath, replyTimeoutMs, null);
            long features = probe.getU64(fe, VhostUserRequest.VHOST_USER_GET_FEATURES);
            long protocol = probe.getU64(fe, VhostUserRequest.VHOST_USER_GET_PROTOCOL_FEATURES);
            fe.send(VhostUserRequest.VHOST_USER_SET_PROTOCOL_FEATURES, false, new VhostUserU64(protocol));
            int queues = (int) probe.getU64(fe, VhostUserRequest.VHOST_USER_GET_QUEUE_NUM);
            int memSlots = (int) probe.getU64(fe, VhostUserRequest.VHOST_USER_GET_MAX_MEM_SLOTS);
            return new MalformedMessageReplay(
                    socketPath, replyTimeoutMs, new Offer(features, protocol, queues, memSlots));
        }
    }

    /** The names of the table's cases, in order. */
    public static List<String> caseNames() {
        return cases().stream().map(VhostUserBackendMalformedTest.Case::name).toList();
    }

    /** Runs every case of the table, each on its own connection; one outcome per case, in table order. */
    public List<Outcome> runAll() {
        List<Outcome> outcomes = new ArrayList<>();
        for (VhostUserBackendMalformedTest.Case k : cases()) {
            outcomes.add(run(k));
        }
        return outcomes;
    }

    private static List<VhostUserBackendMalformedTest.Case> cases() {
        return VhostUserBackendMalformedTest.cases()
                .map(Arguments::get)
                .map(a -> (VhostUserBackendMalformedTest.Case) a[0])
                .toList();
    }

    private Outcome run(VhostUserBackendMalformedTest.Case k) {
        List<String> problems = new ArrayList<>();
        String answer = "?";
        // the reference device offers what the remote back-end offers: handshake() and startRings() then hold
        FakeVhostUserDevice reference =
                new FakeVhostUserDevice(offer.features(), offer.protocolFeatures(), offer.queues(), offer.memSlots());
        BackendHarness h = new BackendHarness(reference, dial(socketPath));
        VhostUserBackendMalformedTest.Ctx x = new VhostUserBackendMalformedTest.Ctx(h);
        try {
            setUp(h, k.level());
            k.send().accept(x);
            // our copies of the sent fds: after these are closed only the back-end's could keep a probe open
            for (int[] pair : x.probes) {
                Unistd.close(pair[0]);
            }
            answer = answer(h.frontEnd, k, problems);
            for (int[] pair : x.probes) {
                if (!BackendHarness.peerClosed(pair[1])) {
                    problems.add("an fd sent with the message is still open in the back-end");
                }
            }
        } catch (AssertionError | RuntimeException e) {
            problems.add("failed: " + e);
        } finally {
            for (int[] pair : x.probes) {
                Unistd.close(pair[1]);
            }
            h.close();
        }
        return new Outcome(k.name(), k.expect().name(), answer, problems);
    }

    /** The unit test's set-up, without what only an in-process back-end can check. */
    private void setUp(BackendHarness h, VhostUserBackendMalformedTest.Level level) {
        switch (level) {
            case FRESH -> {}
            case OWNED -> h.handshake();
            case READY -> {
                h.handshake();
                TestFrontEnd fe = h.frontEnd;
                assertEquals(0, fe.ack(VhostUserRequest.VHOST_USER_SET_FEATURES, new VhostUserU64(offer.features())));
                assertEquals(
                        0,
                        fe.ack(
                                VhostUserRequest.VHOST_USER_ADD_MEM_REG,
                                VhostUserMemRegMsg.of(BackendHarness.ramRegion()),
                                h.memfd));
            }
            case RUNNING -> {
                h.handshake();
                h.startRings(false, 0);
            }
        }
    }

    /**
     * Sends a GET_FEATURES after the case's message and reads up to its reply: what came before it is the case's
     * answer. Returns a short description of the answer; differences from the table go to {@code problems}.
     */
    private String answer(TestFrontEnd fe, VhostUserBackendMalformedTest.Case k, List<String> problems) {
        try {
            fe.send(VhostUserRequest.VHOST_USER_GET_FEATURES, false, null);
        } catch (RuntimeException e) {
            problems.add("the back-end closed the connection (send: " + e.getMessage() + ")");
            return "EOF";
        }
        VhostUserMessage first = next(fe, problems);
        if (first == null) {
            return "EOF";
        }
        String answer;
        boolean firstIsSync = first.header().request() == VhostUserRequest.VHOST_USER_GET_FEATURES.id()
                && first.header().sizeBytes() == VhostUserU64.SIZE_BYTES
                && k.requestId() != VhostUserRequest.VHOST_USER_GET_FEATURES.id();
        if (firstIsSync) {
            answer = "NONE";
            checkSync(first, problems);
        } else {
            answer = describe(first, k.requestId());
            VhostUserMessage sync = next(fe, problems);
            if (sync == null) {
                return answer + ", then EOF";
            }
            checkSync(sync, problems);
        }
        String expected =
                switch (k.expect()) {
                    case NONE -> "NONE";
                    case ACK_FAILURE -> "ACK 1";
                    case EMPTY_REPLY -> "EMPTY_REPLY";
                };
        if (!answer.equals(expected)) {
            problems.add("answered " + answer + " where the table expects " + expected);
        }
        return answer;
    }

    private static String describe(VhostUserMessage m, int requestId) {
        String name = VhostUserRequest.nameOf(m.header().request());
        if (m.header().request() != requestId || !m.header().isReply()) {
            return "unexpected " + name + " (flags 0x"
                    + Integer.toHexString(m.header().flags()) + ")";
        }
        long size = m.header().sizeBytes();
        if (size == 0) {
            return "EMPTY_REPLY";
        }
        if (size == VhostUserU64.SIZE_BYTES) {
            return "ACK " + m.payload().get(ValueLayout.JAVA_LONG_UNALIGNED, 0);
        }
        return "reply of " + size + " bytes";
    }

    private void checkSync(VhostUserMessage sync, List<String> problems) {
        MemorySegment payload = sync.payload();
        long features =
                payload.byteSize() == VhostUserU64.SIZE_BYTES ? payload.get(ValueLayout.JAVA_LONG_UNALIGNED, 0) : -1;
        if (sync.header().request() != VhostUserRequest.VHOST_USER_GET_FEATURES.id() || features != offer.features()) {
            problems.add("GET_FEATURES after the message answered " + describe(sync, 1));
        }
    }

    /** The next message, or null (and a problem) on end of stream or when none comes within the timeout. */
    private VhostUserMessage next(TestFrontEnd fe, List<String> problems) {
        int revents = Poll.poll(fe.socketFd(), Poll.POLLIN, replyTimeoutMs);
        if (revents == 0) {
            problems.add("no answer within " + replyTimeoutMs + " ms");
            return null;
        }
        try {
            VhostUserMessage m = fe.receive();
            closeFds(m);
            return m;
        } catch (AssertionFailedError e) {
            // TestFrontEnd.receive fails on end of stream
            problems.add("the back-end closed the connection");
            return null;
        }
    }

    private long getU64(TestFrontEnd fe, VhostUserRequest request) {
        fe.send(request, false, null);
        if (Poll.poll(fe.socketFd(), Poll.POLLIN, replyTimeoutMs) == 0) {
            throw new IllegalStateException(
                    socketPath + ": no reply to " + request.name() + " within " + replyTimeoutMs + " ms");
        }
        return fe.replyU64(request.id());
    }

    private static void closeFds(VhostUserMessage m) {
        for (int fd : m.fds()) {
            Unistd.close(fd);
        }
    }

    /** A new connection to the back-end's listening socket. */
    private static int dial(String socketPath) {
        int fd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_STREAM | Socket.SOCK_CLOEXEC, 0);
        try {
            Socket.connect(fd, socketPath);
            return fd;
        } catch (RuntimeException e) {
            Unistd.close(fd);
            throw e;
        }
    }
}
