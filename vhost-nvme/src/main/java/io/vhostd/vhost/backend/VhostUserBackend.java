package io.vhostd.vhost.backend;

import static io.vhostd.vhost.proto.VhostUserProtocolFeature.NO_FEATURE;

import io.vhostd.journal.JournalException;
import io.vhostd.journal.StoreObserver;
import io.vhostd.journal.inflight.InflightPackedRecovery;
import io.vhostd.journal.inflight.InflightRegionDescriptor;
import io.vhostd.journal.inflight.InflightRegionPacked;
import io.vhostd.journal.inflight.InflightRegionSplit;
import io.vhostd.journal.inflight.InflightSplitRecovery;
import io.vhostd.shm.linux.ErrnoException;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Fcntl;
import io.vhostd.shm.linux.Memfd;
import io.vhostd.shm.linux.Mman;
import io.vhostd.shm.linux.Stat;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.vhost.proto.VhostUserCodec;
import io.vhostd.vhost.proto.VhostUserConfig;
import io.vhostd.vhost.proto.VhostUserFeature;
import io.vhostd.vhost.proto.VhostUserHeader;
import io.vhostd.vhost.proto.VhostUserInflight;
import io.vhostd.vhost.proto.VhostUserMemRegMsg;
import io.vhostd.vhost.proto.VhostUserMemory;
import io.vhostd.vhost.proto.VhostUserMemoryRegion;
import io.vhostd.vhost.proto.VhostUserPayload;
import io.vhostd.vhost.proto.VhostUserProtocolException;
import io.vhostd.vhost.proto.VhostUserProtocolFeature;
import io.vhostd.vhost.proto.VhostUserRequest;
import io.vhostd.vhost.proto.VhostUserU64;
import io.vhostd.vhost.proto.VhostUserVringAddr;
import io.vhostd.vhost.proto.VhostUserVringFd;
import io.vhostd.vhost.proto.VhostUserVringState;
import io.vhostd.vhost.virtio.GuestMemory;
import io.vhostd.vhost.virtio.GuestMemoryRegion;
import io.vhostd.vhost.virtio.PackedRingDescriptor;
import io.vhostd.vhost.virtio.PackedVirtqueue;
import io.vhostd.vhost.virtio.SplitRingDescriptor;
import io.vhostd.vhost.virtio.SplitVirtqueue;
import io.vhostd.vhost.virtio.VirtioBlk;
import io.vhostd.vhost.virtio.Virtqueue;
import java.lang.System.Logger.Level;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The vhost-user back-end of one front-end connection (a <em>session</em>): reads each message, checks it against the
 * connection's state, runs the handler named after it ({@code handleGetFeatures} for {@code
 * VHOST_USER_GET_FEATURES}, ...), and answers as vhost-user.rst says.
 *
 * <p>Replies: a request with a reply of its own ({@link VhostUserRequest#repliesWith}) always gets it, on failure in
 * the shape the front-end recognises as an error (an empty payload for {@code GET_*}, as the specification says for
 * {@code GET_CONFIG}; {@code u64} 1 for status replies). Any other request with {@code NEED_REPLY} gets the {@code
 * REPLY_ACK} {@code u64}: 0 success, 1 failure. Like libvhost-user, {@code NEED_REPLY} is honoured even before {@code
 * REPLY_ACK} was negotiated: a front-end that sets it waits for the answer. Without {@code NEED_REPLY} a failed
 * request is only logged and counted; the connection keeps serving.
 *
 * <p>Ring lifecycle (vhost-user.rst "Ring states"): a ring is started by {@code SET_VRING_KICK} and stopped by {@code
 * GET_VRING_BASE}; it is enabled by {@code SET_VRING_ENABLE} 1, or by {@code SET_FEATURES} without {@code
 * VHOST_USER_F_PROTOCOL_FEATURES}. The device's {@link VhostUserDevice#startQueue} runs when a ring is started,
 * enabled and has its size, addresses, features and memory; {@link VhostUserDevice#stopQueue} when it stops, is
 * disabled, or something it depends on changes (memory table, features, eventfds, addresses), after which it is
 * started again from the saved avail index.
 *
 * <p>Threads: one connection thread runs {@link #run()} (or calls {@link #handleOneMessage()}); every device call
 * happens on it. To end a running back-end from another thread, shut the socket down ({@code Socket.shutdown}); the
 * loop then sees end of stream and cleans up.
 *
 * <p>File descriptors: a message's fds belong to the back-end once received; those the message does not take are
 * closed. Every fd the back-end keeps is reported to {@link VhostUserDevice#fdReceived} and, before it is closed,
 * {@link VhostUserDevice#fdReleased}.
 */
public final class VhostUserBackend implements Runnable, AutoCloseable {
    /** Protocol features this back-end implements; the device's offer is masked with it. */
    public static final long SUPPORTED_PROTOCOL_FEATURES = VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_MQ_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_REPLY_ACK_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_BACKEND_REQ_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_CONFIG_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_RESET_DEVICE_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_STATUS_MASK
            | VhostUserProtocolFeature.VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD_MASK;

    /**
     * Virtio features this back-end cannot serve, removed from the device's offer: the dirty log ({@code
     * VHOST_F_LOG_ALL}, not implemented: migration needs it) and {@code VIRTIO_F_ACCESS_PLATFORM} (no IOTLB). Split
     * and packed rings ({@code VIRTIO_F_RING_PACKED}) are both served.
     */
    public static final long UNSUPPORTED_FEATURES =
            VhostUserFeature.VHOST_F_LOG_ALL_MASK | VirtioBlk.VIRTIO_F_ACCESS_PLATFORM_MASK;

    /** Queue indexes travel in 8 bits ({@code VHOST_USER_VRING_IDX_MASK}): at most 256 queues. */
    public static final int MAX_QUEUES = VhostUserVringFd.VHOST_USER_VRING_IDX_MASK + 1;

    /**
     * Largest ring ({@code VHOST_USER_SET_VRING_NUM}): virtio 1.2 §2.7 "The maximum Queue Size value is 32768", §2.8
     * "up to 2^15 entries".
     */
    public static final int MAX_QUEUE_SIZE = SplitRingDescriptor.MAX_QUEUE_SIZE;

    private static final System.Logger LOG = System.getLogger(VhostUserBackend.class.getName());
    private static final AtomicInteger NEXT_REGION_ID = new AtomicInteger(1);
    private static final long U16_MASK = 0xFFFF;
    private static final long STATUS_MASK = 0xFF;

    private final int connectionFd;
    private final VhostUserDevice device;
    private final String name;
    private final VhostUserConnection connection;
    private final long offeredFeatures;
    private final long offeredProtocolFeatures;
    private final int maxQueues;
    private final Vring[] vrings;
    private final List<MappedRegion> regions = new ArrayList<>();
    private final Set<Integer> errorLogged = new HashSet<>();

    private GuestMemory memory = GuestMemory.empty();
    private boolean owner;
    private boolean featuresNegotiated;
    private long ackedFeatures;
    private long negotiatedProtocolFeatures;
    private int deviceStatus;
    private int backendReqFd = -1;
    /** The inflight buffer (INFLIGHT_SHMFD) from GET_INFLIGHT_FD or SET_INFLIGHT_FD, or null. */
    private InflightBuffer inflight;
    /** An fd sent with the reply of the message being handled (GET_INFLIGHT_FD), or -1; the back-end keeps it. */
    private int replyFd = -1;

    private volatile long protocolErrors;
    private boolean closed;

    /**
     * @param connectionFd the accepted vhost-user socket; the back-end owns it from now on and closes it in {@link
     *     #close()}
     * @param device the device model and data path
     * @param name for logs (e.g. the controller name)
     * @throws IllegalArgumentException if {@code device.maxQueues()} is outside 1 .. {@value #MAX_QUEUES}
     */
    public VhostUserBackend(int connectionFd, VhostUserDevice device, String name) {
        this.connectionFd = connectionFd;
        this.device = device;
        this.name = name;
        this.maxQueues = device.maxQueues();
        if (maxQueues < 1 || maxQueues > MAX_QUEUES) {
            throw new IllegalArgumentException(name + ": maxQueues must be in 1.." + MAX_QUEUES + ": " + maxQueues);
        }
        long deviceFeatures = device.features();
        this.offeredFeatures =
                (deviceFeatures & ~UNSUPPORTED_FEATURES) | VhostUserFeature.VHOST_USER_F_PROTOCOL_FEATURES_MASK;
        long deviceProtocolFeatures = device.protocolFeatures();
        this.offeredProtocolFeatures = deviceProtocolFeatures & SUPPORTED_PROTOCOL_FEATURES;
        if ((deviceFeatures & UNSUPPORTED_FEATURES) != 0
                || (deviceProtocolFeatures & ~SUPPORTED_PROTOCOL_FEATURES) != 0) {
            LOG.log(
                    Level.INFO,
                    "{0}: not offering features 0x{1} and protocol features {2}: not implemented",
                    name,
                    Long.toHexString(deviceFeatures & UNSUPPORTED_FEATURES),
                    VhostUserProtocolFeature.describe(deviceProtocolFeatures & ~SUPPORTED_PROTOCOL_FEATURES));
        }
        this.vrings = new Vring[maxQueues];
        for (int i = 0; i < maxQueues; i++) {
            vrings[i] = new Vring(i);
        }
        this.connection = new VhostUserConnection(connectionFd);
        device.fdReceived("connection", 0, connectionFd);
    }

    /**
     * A guest memory region of a restored session (issue #4).
     *
     * @param description as the front-end described it ({@code VHOST_USER_SET_MEM_TABLE} / {@code ADD_MEM_REG})
     * @param regionId the id VirtNvme commands already name it by (kept across the handover)
     * @param fd the region's fd (the back-end owns it from now on)
     */
    public record RestoredRegion(VhostUserMemoryRegion description, int regionId, int fd) {}

    /**
     * A vring of a restored session: started ({@code SET_VRING_KICK} was received) and positioned at {@code base}.
     *
     * @param index queue index
     * @param num queue size
     * @param addr the ring addresses as the front-end sent them (user addresses)
     * @param base the vring base to start at (split: the next avail index)
     * @param enabled {@code SET_VRING_ENABLE} 1 was received
     * @param kickFd kick eventfd or -1; callFd, errFd likewise (the back-end owns them)
     */
    public record RestoredVring(
            int index,
            int num,
            VhostUserVringAddr addr,
            int base,
            boolean enabled,
            int kickFd,
            int callFd,
            int errFd) {}

    /**
     * What a replacement back-end continues from (issue #4, DESIGN §3): the negotiated features, the memory table and
     * the started vrings, taken from the session journal and the master's fd custody instead of messages.
     *
     * @param features negotiated virtio features ({@code VHOST_USER_SET_FEATURES})
     * @param protocolFeatures negotiated protocol features
     * @param regions the memory table in table order
     * @param vrings the started vrings
     * @param inflightFd the inflight buffer's fd ({@code VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD}, custody kind {@code
     *     "inflight"}), mapped from offset 0 over its whole size, or -1; the queue size is the first vring's
     */
    public record RestoredSession(
            long features,
            long protocolFeatures,
            List<RestoredRegion> regions,
            List<RestoredVring> vrings,
            int inflightFd) {
        public RestoredSession {
            regions = List.copyOf(regions);
            vrings = List.copyOf(vrings);
        }

        /** Without an inflight buffer. */
        public RestoredSession(
                long features, long protocolFeatures, List<RestoredRegion> regions, List<RestoredVring> vrings) {
            this(features, protocolFeatures, regions, vrings, -1);
        }
    }

    /**
     * A back-end that continues a session another process served (issue #4): no message is exchanged; the
     * connection is already past negotiation. Features are re-validated against this device's offer, every region is
     * mapped again under its old id, the device is told ({@link VhostUserDevice#sessionRestored}) and each vring is
     * started at its base (which writes its call eventfd once, so the guest re-checks the used ring).
     *
     * @param connectionFd the held vhost-user connection (the back-end owns it)
     * @param device the device model and data path
     * @param name for logs
     * @param state what to continue from; its fds belong to the back-end from now on
     * @return the back-end; call {@link #logDeferred()} once the session runs, then {@link #run()} to keep serving
     *     messages
     * @throws VhostUserProtocolException if the restored state is not one this device can serve (the back-end is
     *     closed, its fds with it)
     */
    public static VhostUserBackend restore(
            int connectionFd, VhostUserDevice device, String name, RestoredSession state) {
        VhostUserBackend backend = new VhostUserBackend(connectionFd, device, name);
        backend.deferredLog = new ArrayList<>();
        try {
            backend.restoreState(state);
        } catch (RuntimeException e) {
            backend.logDeferred();
            backend.close();
            throw e;
        }
        return backend;
    }

    /**
     * Lines {@link #info} keeps back while {@link #restore} runs, or null: a restore is inside a guest's pause (issue
     * #4), and one log line took ~0.8 ms there (the formatter, a write to stderr), three lines in a QEMU session.
     */
    private List<String> deferredLog;

    /** Logs {@code message} at INFO now, or after a restore ({@link #logDeferred()}) while one runs. */
    private void info(String message) {
        List<String> deferred = deferredLog;
        if (deferred != null) {
            deferred.add(message);
        } else {
            LOG.log(Level.INFO, message);
        }
    }

    /** Logs what {@link #restore} kept back (in order); from here on lines are logged at once. */
    public void logDeferred() {
        List<String> deferred = deferredLog;
        deferredLog = null;
        if (deferred != null) {
            deferred.forEach(line -> LOG.log(Level.INFO, line));
        }
    }

    /**
     * How long the last {@link #restore} spent mapping the memory table (to {@link VhostUserDevice#sessionRestored}
     * included) and starting the vrings, in µs; "" before one.
     */
    public String restoreSteps() {
        return restoreSteps;
    }

    private String restoreSteps = "";

    private void restoreState(RestoredSession state) {
        long t0 = System.nanoTime();
        long tMapped = t0;
        int id = VhostUserRequest.VHOST_USER_SET_FEATURES.id();
        List<MappedRegion> mapped = new ArrayList<>();
        // the fds are ours whatever happens: those not taken yet are closed on the way out
        List<Integer> pendingFds = new ArrayList<>();
        for (RestoredRegion r : state.regions()) {
            pendingFds.add(r.fd());
        }
        for (RestoredVring r : state.vrings()) {
            pendingFds.addAll(List.of(r.kickFd(), r.callFd(), r.errFd()));
        }
        pendingFds.add(state.inflightFd());
        try {
            // restored state is untrusted: re-validate it as the messages would have been
            long notOffered = state.features() & ~offeredFeatures;
            if (notOffered != 0) {
                throw new VhostUserProtocolException(
                        id, "restored features 0x" + Long.toHexString(notOffered) + " not offered");
            }
            if ((state.protocolFeatures() & ~offeredProtocolFeatures) != 0) {
                throw new VhostUserProtocolException(id, "restored protocol features not offered");
            }
            owner = true;
            ackedFeatures = state.features();
            featuresNegotiated = true;
            negotiatedProtocolFeatures = state.protocolFeatures();
            boolean allEnabled = (state.features() & VhostUserFeature.VHOST_USER_F_PROTOCOL_FEATURES_MASK) == 0;
            if (state.regions().size() > device.maxMemSlots()) {
                throw new VhostUserProtocolException(id, state.regions().size() + " restored regions");
            }
            for (RestoredRegion r : state.regions()) {
                pendingFds.remove((Integer) r.fd());
                mapped.add(mapRegion(id, r.description(), r.fd(), r.regionId()));
            }
            GuestMemory restoredMemory;
            try {
                restoredMemory = new GuestMemory(guestRegions(mapped));
            } catch (IllegalArgumentException e) {
                throw new VhostUserProtocolException(id, "invalid restored memory table: " + e.getMessage(), e);
            }
            device.sessionRestored(state.features(), state.protocolFeatures(), restoredMemory, guestRegions(mapped));
            memory = restoredMemory;
            regions.addAll(mapped);
            mapped.clear();
            tMapped = System.nanoTime();
            if (state.inflightFd() >= 0) {
                pendingFds.remove((Integer) state.inflightFd());
                restoreInflight(id, state);
            }
            for (RestoredVring r : state.vrings()) {
                Vring v = vring(id, r.index());
                if (!isValidQueueSize(r.num()) || v.started) {
                    throw new VhostUserProtocolException(id, "restored queue " + r.index() + ": bad size or twice");
                }
                v.num = r.num();
                v.addr = r.addr();
                v.base = r.base();
                v.baseSet = true;
                for (int fd : List.of(r.kickFd(), r.callFd(), r.errFd())) {
                    pendingFds.remove((Integer) fd);
                }
                v.kickFd = r.kickFd();
                v.callFd = r.callFd();
                v.errFd = r.errFd();
                reportFd("kick", v.index, v.kickFd);
                reportFd("call", v.index, v.callFd);
                reportFd("err", v.index, v.errFd);
                v.started = true;
                v.enabled = r.enabled() || allEnabled;
                startIfReady(id, v);
            }
            restoreSteps = "map " + (tMapped - t0) / 1_000 + ", vrings " + (System.nanoTime() - tMapped) / 1_000;
        } finally {
            mapped.forEach(this::release);
            for (int fd : pendingFds) {
                if (fd >= 0) {
                    VhostUserConnection.closeQuietly(fd);
                }
            }
        }
    }

    private void reportFd(String what, int index, int fd) {
        if (fd >= 0) {
            device.fdReceived(what, index, fd);
        }
    }

    /** The name given at construction. */
    public String name() {
        return name;
    }

    /** Virtio features offered in {@code VHOST_USER_GET_FEATURES}. */
    public long offeredFeatures() {
        return offeredFeatures;
    }

    /** Protocol features offered in {@code VHOST_USER_GET_PROTOCOL_FEATURES}. */
    public long offeredProtocolFeatures() {
        return offeredProtocolFeatures;
    }

    /** Messages answered as errors so far (any thread may read it). */
    public long protocolErrors() {
        return protocolErrors;
    }

    /** The back-end → front-end channel from {@code VHOST_USER_SET_BACKEND_REQ_FD}, or -1. Connection thread only. */
    public int backendRequestFd() {
        return backendReqFd;
    }

    /**
     * Reads and handles one message; blocks until it has arrived.
     *
     * @return false when the front-end closed the connection (then call {@link #close()})
     * @throws ErrnoException on a socket error (the connection is unusable; call {@link #close()})
     * @throws IllegalStateException after {@link #close()}
     */
    public boolean handleOneMessage() {
        if (closed) {
            throw new IllegalStateException(name + ": back-end closed");
        }
        VhostUserMessage msg = connection.receive();
        if (msg == null) {
            return false;
        }
        dispatch(msg);
        return true;
    }

    /** Serves the connection until end of stream or a socket error, then {@link #close()}s. */
    @Override
    public void run() {
        try {
            while (handleOneMessage()) {
                // one message per iteration; errors are answered inside
            }
            LOG.log(Level.INFO, "{0}: front-end closed the connection", name);
        } catch (RuntimeException e) {
            LOG.log(Level.ERROR, name + ": connection failed", e);
        } finally {
            close();
        }
    }

    /**
     * Ends the session: stops every running queue, calls {@link VhostUserDevice#disconnected()}, then releases the
     * eventfds, the back-end channel, the guest memory and the connection socket. Idempotent; connection thread only.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        for (Vring v : vrings) {
            if (v.running) {
                v.running = false;
                try {
                    device.stopQueue(v.index);
                } catch (RuntimeException e) {
                    LOG.log(Level.WARNING, name + ": queue " + v.index + ": device failed to stop it", e);
                }
            }
        }
        try {
            device.disconnected();
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, name + ": device.disconnected failed", e);
        }
        for (Vring v : vrings) {
            v.kickFd = replaceFd("kick", v.index, v.kickFd, -1);
            v.callFd = replaceFd("call", v.index, v.callFd, -1);
            v.errFd = replaceFd("err", v.index, v.errFd, -1);
        }
        backendReqFd = replaceFd("backend_req", 0, backendReqFd, -1);
        releaseInflight();
        for (MappedRegion m : regions) {
            release(m);
        }
        regions.clear();
        memory = GuestMemory.empty();
        connection.close();
        replaceFd("connection", 0, connectionFd, -1);
    }

    // ---- dispatch ----

    private void dispatch(VhostUserMessage msg) {
        VhostUserHeader header = msg.header();
        int id = header.request();
        VhostUserRequest request = VhostUserRequest.fromId(id);
        // decided before the handler runs: SET_PROTOCOL_FEATURES must not change how its own answer looks
        boolean ownReply = request != null && request.repliesWith(negotiatedProtocolFeatures);
        ReceivedFds fds = new ReceivedFds(msg.fds());
        replyFd = -1;
        VhostUserPayload reply = null;
        VhostUserProtocolException failure = null;
        try {
            checkMessage(msg, request, fds);
            reply = handle(request, msg.payload(), fds);
        } catch (VhostUserProtocolException e) {
            failure = e;
        } catch (RuntimeException e) {
            // a bug or a device failure, not the front-end's fault: answered like any failure, the session goes on
            LOG.log(Level.ERROR, name + ": " + VhostUserRequest.nameOf(id) + " failed", e);
            failure = new VhostUserProtocolException(id, "internal error: " + e, e);
        } finally {
            // before the reply: once the front-end has its answer, the fds it sent are settled
            fds.closeUnclaimed();
        }
        if (failure != null) {
            protocolError(failure);
            if (ownReply) {
                sendFailureReply(request);
            } else if (header.needReply()) {
                sendAck(id, VhostUserU64.ACK_FAILURE);
            }
        } else if (ownReply && replyFd >= 0) {
            connection.send(VhostUserHeader.reply(id, reply.sizeBytes()), reply, replyFd);
        } else if (ownReply) {
            connection.send(VhostUserHeader.reply(id, reply.sizeBytes()), reply);
        } else if (header.needReply()) {
            sendAck(id, VhostUserU64.ACK_SUCCESS);
        }
    }

    /** Header, framing, state and fd count: everything that is the same for every request. */
    private void checkMessage(VhostUserMessage msg, VhostUserRequest request, ReceivedFds fds) {
        VhostUserHeader header = msg.header();
        int id = header.request();
        header.checkRequest();
        if (msg.payloadSkipped()) {
            throw new VhostUserProtocolException(
                    id,
                    "payload of " + header.sizeBytes() + " bytes exceeds the " + VhostUserCodec.MAX_PAYLOAD_SIZE_BYTES
                            + "-byte limit (skipped)");
        }
        if (msg.fdsTruncated()) {
            throw new VhostUserProtocolException(
                    id, "more than " + VhostUserConnection.RECEIVE_FD_CAPACITY + " fds attached (all closed)");
        }
        if (request == null) {
            throw new VhostUserProtocolException(id, "not defined by the specification");
        }
        if (request.needsOwner() && !owner) {
            throw new VhostUserProtocolException(id, "not allowed before VHOST_USER_SET_OWNER");
        }
        int bit = request.requiredFeatureBit();
        if (bit != NO_FEATURE && (negotiatedProtocolFeatures & (1L << bit)) == 0) {
            throw new VhostUserProtocolException(id, VhostUserProtocolFeature.name(bit) + " not negotiated");
        }
        VhostUserCodec.checkPayloadSize(request, msg.payload());
        VhostUserRequest.Fds rule = request.fdsWith(negotiatedProtocolFeatures);
        int count = fds.count();
        switch (rule) {
            case NONE -> {
                if (count != 0) {
                    throw new VhostUserProtocolException(id, "takes no fd, got " + count + " (closed)");
                }
            }
            case ONE -> {
                if (count != 1) {
                    throw new VhostUserProtocolException(
                            id, count == 0 ? "missing its fd" : "takes one fd, got " + count + " (closed)");
                }
            }
            case ONE_UNLESS_NOFD, PER_REGION, TOLERATED_ONE -> {
                if (count > rule.maxFds()) {
                    throw new VhostUserProtocolException(
                            id, "takes at most " + rule.maxFds() + " fds, got " + count + " (closed)");
                }
            }
        }
    }

    private VhostUserPayload handle(VhostUserRequest request, MemorySegment payload, ReceivedFds fds) {
        return switch (request) {
            case VHOST_USER_GET_FEATURES -> handleGetFeatures();
            case VHOST_USER_SET_FEATURES -> handleSetFeatures(payload);
            case VHOST_USER_SET_OWNER -> handleSetOwner();
            case VHOST_USER_RESET_OWNER -> handleResetOwner();
            case VHOST_USER_SET_MEM_TABLE -> handleSetMemTable(payload, fds);
            case VHOST_USER_SET_LOG_BASE -> handleSetLogBase();
            case VHOST_USER_SET_LOG_FD -> handleSetLogFd();
            case VHOST_USER_SET_VRING_NUM -> handleSetVringNum(payload);
            case VHOST_USER_SET_VRING_ADDR -> handleSetVringAddr(payload);
            case VHOST_USER_SET_VRING_BASE -> handleSetVringBase(payload);
            case VHOST_USER_GET_VRING_BASE -> handleGetVringBase(payload);
            case VHOST_USER_SET_VRING_KICK -> handleSetVringKick(payload, fds);
            case VHOST_USER_SET_VRING_CALL -> handleSetVringCall(payload, fds);
            case VHOST_USER_SET_VRING_ERR -> handleSetVringErr(payload, fds);
            case VHOST_USER_GET_PROTOCOL_FEATURES -> handleGetProtocolFeatures();
            case VHOST_USER_SET_PROTOCOL_FEATURES -> handleSetProtocolFeatures(payload);
            case VHOST_USER_GET_QUEUE_NUM -> handleGetQueueNum();
            case VHOST_USER_SET_VRING_ENABLE -> handleSetVringEnable(payload);
            case VHOST_USER_SET_BACKEND_REQ_FD -> handleSetBackendReqFd(fds);
            case VHOST_USER_GET_CONFIG -> handleGetConfig(payload);
            case VHOST_USER_SET_CONFIG -> handleSetConfig(payload);
            case VHOST_USER_GET_INFLIGHT_FD -> handleGetInflightFd(payload);
            case VHOST_USER_SET_INFLIGHT_FD -> handleSetInflightFd(payload, fds);
            case VHOST_USER_RESET_DEVICE -> handleResetDevice();
            case VHOST_USER_GET_MAX_MEM_SLOTS -> handleGetMaxMemSlots();
            case VHOST_USER_ADD_MEM_REG -> handleAddMemReg(payload, fds);
            case VHOST_USER_REM_MEM_REG -> handleRemMemReg(payload);
            case VHOST_USER_SET_STATUS -> handleSetStatus(payload);
            case VHOST_USER_GET_STATUS -> handleGetStatus();
            default -> handleUnsupported(request);
        };
    }

    private void sendAck(int id, VhostUserU64 status) {
        connection.send(VhostUserHeader.reply(id, VhostUserU64.SIZE_BYTES), status);
    }

    /** The failure form of a request's own reply, as the front-end recognises it. */
    private void sendFailureReply(VhostUserRequest request) {
        int id = request.id();
        switch (request.reply()) {
            case ACK_U64 -> sendAck(id, VhostUserU64.ACK_FAILURE);
            // vhost-user.rst SET_DEVICE_STATE_FD: bits 0-7 non-zero = error, bit 8 = no fd returned
            case DEVICE_STATE_U64 -> sendAck(id, new VhostUserU64(0x101));
            // an empty payload: QEMU checks the reply size of GET_* and reports the mismatch as an error;
            // for GET_CONFIG it is what the specification prescribes ("zero length of payload")
            default -> connection.send(VhostUserHeader.reply(id, 0), null);
        }
    }

    private void protocolError(VhostUserProtocolException e) {
        protocolErrors++;
        // logged once per request id: a front-end repeating a bad message must not flood the log
        Level level = errorLogged.add(e.requestId()) ? Level.WARNING : Level.DEBUG;
        LOG.log(level, name + ": " + e.getMessage(), e.getCause());
    }

    // ---- features and ownership ----

    private VhostUserPayload handleGetFeatures() {
        return new VhostUserU64(offeredFeatures);
    }

    private VhostUserPayload handleSetFeatures(MemorySegment payload) {
        int id = VhostUserRequest.VHOST_USER_SET_FEATURES.id();
        long features = VhostUserU64.decode(id, payload).value();
        long notOffered = features & ~offeredFeatures;
        if (notOffered != 0) {
            throw new VhostUserProtocolException(id, "features 0x" + Long.toHexString(notOffered) + " not offered");
        }
        if (featuresNegotiated && features == ackedFeatures) {
            return null;
        }
        // the running rings were built for the old features (EVENT_IDX, INDIRECT_DESC): rebuild them
        List<Vring> stopped = stopAllRunning(id);
        try {
            device.featuresNegotiated(features);
        } catch (RuntimeException e) {
            restartAll(id, stopped);
            throw new VhostUserProtocolException(id, "device refused features 0x" + Long.toHexString(features), e);
        }
        ackedFeatures = features;
        featuresNegotiated = true;
        if ((features & VhostUserFeature.VHOST_USER_F_PROTOCOL_FEATURES_MASK) == 0) {
            // vhost-user.rst "Ring states": without VHOST_USER_F_PROTOCOL_FEATURES all rings are enabled at once
            for (Vring v : vrings) {
                v.enabled = true;
            }
        }
        restartAll(id, Arrays.asList(vrings));
        return null;
    }

    private VhostUserPayload handleSetOwner() {
        if (owner) {
            throw new VhostUserProtocolException(VhostUserRequest.VHOST_USER_SET_OWNER.id(), "owner already set");
        }
        owner = true;
        return null;
    }

    /** Deprecated by the specification, which recommends ignoring it or disabling all rings: this disables them. */
    private VhostUserPayload handleResetOwner() {
        stopAllRunning(VhostUserRequest.VHOST_USER_RESET_OWNER.id());
        for (Vring v : vrings) {
            v.enabled = false;
        }
        owner = false;
        return null;
    }

    private VhostUserPayload handleGetProtocolFeatures() {
        return new VhostUserU64(offeredProtocolFeatures);
    }

    private VhostUserPayload handleSetProtocolFeatures(MemorySegment payload) {
        int id = VhostUserRequest.VHOST_USER_SET_PROTOCOL_FEATURES.id();
        long features = VhostUserU64.decode(id, payload).value();
        long notOffered = features & ~offeredProtocolFeatures;
        if (notOffered != 0) {
            // also rejects INBAND_NOTIFICATIONS, which is never offered
            throw new VhostUserProtocolException(
                    id, "protocol features " + VhostUserProtocolFeature.describe(notOffered) + " not offered");
        }
        negotiatedProtocolFeatures = features;
        device.protocolFeaturesNegotiated(features);
        return null;
    }

    private VhostUserPayload handleGetQueueNum() {
        return new VhostUserU64(maxQueues);
    }

    private VhostUserPayload handleGetMaxMemSlots() {
        return new VhostUserU64(device.maxMemSlots());
    }

    private VhostUserPayload handleSetBackendReqFd(ReceivedFds fds) {
        backendReqFd = replaceFd("backend_req", 0, backendReqFd, fds.take(0));
        device.fdReceived("backend_req", 0, backendReqFd);
        return null;
    }

    private VhostUserPayload handleResetDevice() {
        stopAllRunning(VhostUserRequest.VHOST_USER_RESET_DEVICE.id());
        // vhost-user.rst RESET_DEVICE: all rings disabled, device state back to initial; ownership stays
        for (Vring v : vrings) {
            v.kickFd = replaceFd("kick", v.index, v.kickFd, -1);
            v.callFd = replaceFd("call", v.index, v.callFd, -1);
            v.errFd = replaceFd("err", v.index, v.errFd, -1);
            v.reset();
        }
        featuresNegotiated = false;
        ackedFeatures = 0;
        deviceStatus = 0;
        return null;
    }

    private VhostUserPayload handleSetStatus(MemorySegment payload) {
        int id = VhostUserRequest.VHOST_USER_SET_STATUS.id();
        long status = VhostUserU64.decode(id, payload).value();
        if ((status & ~STATUS_MASK) != 0) {
            throw new VhostUserProtocolException(id, "device status 0x" + Long.toHexString(status) + " is not a u8");
        }
        deviceStatus = (int) status;
        return null;
    }

    private VhostUserPayload handleGetStatus() {
        return new VhostUserU64(deviceStatus);
    }

    // ---- config space ----

    private VhostUserPayload handleGetConfig(MemorySegment payload) {
        int id = VhostUserRequest.VHOST_USER_GET_CONFIG.id();
        VhostUserConfig request = VhostUserConfig.decode(id, payload);
        byte[] config = device.config();
        long start = Integer.toUnsignedLong(request.offset());
        long end = start + request.size();
        if (end > config.length) {
            throw new VhostUserProtocolException(
                    id, "config window [" + start + ", " + end + ") outside the " + config.length + "-byte config");
        }
        return new VhostUserConfig(
                request.offset(), request.size(), request.flags(), Arrays.copyOfRange(config, (int) start, (int) end));
    }

    private VhostUserPayload handleSetConfig(MemorySegment payload) {
        int id = VhostUserRequest.VHOST_USER_SET_CONFIG.id();
        VhostUserConfig request = VhostUserConfig.decode(id, payload);
        int length = device.config().length;
        long start = Integer.toUnsignedLong(request.offset());
        if (start + request.size() > length) {
            throw new VhostUserProtocolException(
                    id,
                    "config window [" + start + ", " + (start + request.size()) + ") outside the " + length
                            + "-byte config");
        }
        // vhost-user.rst SET_CONFIG: "back-ends MUST NOT accept SET_CONFIG for read-only configuration space fields";
        // which fields are writable is the device's business
        String refused = device.setConfig(request.offset(), request.payload(), request.flags());
        if (refused != null) {
            throw new VhostUserProtocolException(
                    id, "config window [" + start + ", " + (start + request.size()) + "): " + refused);
        }
        return null;
    }

    // ---- not offered ----

    private VhostUserPayload handleSetLogBase() {
        throw new VhostUserProtocolException(
                VhostUserRequest.VHOST_USER_SET_LOG_BASE.id(),
                "dirty log not implemented (VHOST_F_LOG_ALL / LOG_SHMFD not offered)");
    }

    private VhostUserPayload handleSetLogFd() {
        throw new VhostUserProtocolException(
                VhostUserRequest.VHOST_USER_SET_LOG_FD.id(), "dirty log not implemented (fd closed)");
    }

    // ---- inflight I/O tracking (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) ----

    /**
     * vhost-user.rst {@code VHOST_USER_GET_INFLIGHT_FD}: allocates a zeroed buffer of {@code num_queues} queue regions
     * of {@code queue_size} entries ("Inflight I/O tracking") in the layout of the negotiated ring format (QEMU sends
     * {@code SET_FEATURES} first, {@code vhost_dev_prepare_inflight}), and answers its size and offset with its fd. A
     * previous buffer is replaced (the front-end asks for a new one after a VM reset).
     */
    private VhostUserPayload handleGetInflightFd(MemorySegment payload) {
        int id = VhostUserRequest.VHOST_USER_GET_INFLIGHT_FD.id();
        VhostUserInflight request = VhostUserInflight.decode(id, payload);
        boolean packed = packed();
        checkInflightShape(id, request.numQueues(), request.queueSize(), packed);
        long sizeBytes = InflightRegionDescriptor.mmapSizeBytes(request.numQueues(), request.queueSize(), packed);
        int fd;
        try {
            fd = Memfd.memfd_create("vhost-inflight", Memfd.MFD_CLOEXEC | Memfd.MFD_ALLOW_SEALING);
        } catch (ErrnoException e) {
            throw new VhostUserProtocolException(id, "memfd_create: " + e.getMessage(), e);
        }
        try {
            Unistd.ftruncate(fd, sizeBytes);
            // libvhost-user vu_get_inflight_fd: the size is fixed for the buffer's life (a shrink would SIGBUS us)
            Fcntl.fcntl(fd, Fcntl.F_ADD_SEALS, Fcntl.F_SEAL_GROW | Fcntl.F_SEAL_SHRINK | Fcntl.F_SEAL_SEAL);
        } catch (ErrnoException e) {
            VhostUserConnection.closeQuietly(fd);
            throw new VhostUserProtocolException(
                    id, "inflight buffer of " + sizeBytes + " bytes: " + e.getMessage(), e);
        }
        // a new memfd reads as zeroes: every queue region has version 0 (uninitialised)
        installInflight(id, fd, 0, sizeBytes, request.numQueues(), request.queueSize(), packed, false, "new");
        replyFd = fd;
        return new VhostUserInflight(sizeBytes, 0, request.numQueues(), request.queueSize());
    }

    /**
     * vhost-user.rst {@code VHOST_USER_SET_INFLIGHT_FD}: the front-end hands back the buffer (after the back-end
     * restarted, or on every device start). The description is checked against this device and the fd's size before
     * anything is mapped; the queues' regions are recovered when each ring starts.
     */
    private VhostUserPayload handleSetInflightFd(MemorySegment payload, ReceivedFds fds) {
        int id = VhostUserRequest.VHOST_USER_SET_INFLIGHT_FD.id();
        VhostUserInflight desc = VhostUserInflight.decode(id, payload);
        int fd = fds.take(0);
        boolean packed = packed();
        long neededBytes;
        try {
            checkInflightShape(id, desc.numQueues(), desc.queueSize(), packed);
            neededBytes = InflightRegionDescriptor.mmapSizeBytes(desc.numQueues(), desc.queueSize(), packed);
            if (Long.compareUnsigned(desc.mmapSize(), neededBytes) < 0 || desc.mmapSize() > Long.MAX_VALUE / 2) {
                throw new VhostUserProtocolException(
                        id,
                        "mmap_size " + Long.toUnsignedString(desc.mmapSize()) + " does not hold the " + neededBytes
                                + " bytes of " + desc.numQueues() + " x " + desc.queueSize() + " "
                                + (packed ? "packed" : "split") + " queue regions");
            }
            if (desc.mmapOffset() < 0
                    || desc.mmapOffset() > Long.MAX_VALUE / 2
                    || desc.mmapOffset() % InflightRegionDescriptor.INFLIGHT_ALIGNMENT != 0) {
                throw new VhostUserProtocolException(
                        id,
                        "mmap_offset " + Long.toUnsignedString(desc.mmapOffset()) + " is not a multiple of "
                                + InflightRegionDescriptor.INFLIGHT_ALIGNMENT);
            }
            long fileBytes = Stat.fstat(fd).sizeBytes();
            if (fileBytes < desc.mmapOffset() + desc.mmapSize()) {
                // touching a mapping past the end of the file raises SIGBUS, which would take the process down
                throw new VhostUserProtocolException(
                        id,
                        "inflight fd holds " + fileBytes + " bytes, mmap_offset + mmap_size is "
                                + (desc.mmapOffset() + desc.mmapSize()));
            }
        } catch (RuntimeException e) {
            VhostUserConnection.closeQuietly(fd);
            if (e instanceof VhostUserProtocolException p) {
                throw p;
            }
            throw new VhostUserProtocolException(id, "inflight fd: " + e.getMessage(), e);
        }
        installInflight(
                id,
                fd,
                desc.mmapOffset(),
                neededBytes,
                desc.numQueues(),
                desc.queueSize(),
                packed,
                true,
                "from the front-end");
        return null;
    }

    /** A restored session continues the dead slave's buffer (its own queue regions, live: not a reconnect). */
    private void restoreInflight(int id, RestoredSession state) {
        int fd = state.inflightFd();
        boolean packed = packed();
        long fileBytes;
        try {
            fileBytes = Stat.fstat(fd).sizeBytes();
        } catch (RuntimeException e) {
            VhostUserConnection.closeQuietly(fd);
            throw new VhostUserProtocolException(id, "restored inflight fd: " + e.getMessage(), e);
        }
        if (state.vrings().isEmpty()) {
            installInflightOrClose(id, fd, fileBytes, 1, 1, packed);
            return;
        }
        int queueSize = state.vrings().getFirst().num();
        long perQueue;
        try {
            perQueue = InflightRegionDescriptor.queueRegionLengthBytes(queueSize, packed);
        } catch (IllegalArgumentException e) {
            VhostUserConnection.closeQuietly(fd);
            throw new VhostUserProtocolException(id, "restored inflight buffer: " + e.getMessage(), e);
        }
        int numQueues = (int) Math.min(maxQueues, fileBytes / perQueue);
        installInflightOrClose(id, fd, numQueues * perQueue, numQueues, queueSize, packed);
    }

    private void installInflightOrClose(int id, int fd, long sizeBytes, int numQueues, int queueSize, boolean packed) {
        if (numQueues < 1 || sizeBytes < 1) {
            VhostUserConnection.closeQuietly(fd);
            throw new VhostUserProtocolException(id, "restored inflight buffer of " + sizeBytes + " bytes is empty");
        }
        installInflight(id, fd, 0, sizeBytes, numQueues, queueSize, packed, false, "restored session");
    }

    /** {@code num_queues} 1..device queues, {@code queue_size} a valid size for the ring format. */
    private void checkInflightShape(int id, int numQueues, int queueSize, boolean packed) {
        if (numQueues > maxQueues) {
            throw new VhostUserProtocolException(
                    id, "num_queues " + numQueues + " exceeds the " + maxQueues + " queues of this device");
        }
        boolean valid = packed
                ? PackedRingDescriptor.isValidQueueSize(queueSize)
                : SplitRingDescriptor.isValidQueueSize(queueSize);
        if (!valid || queueSize > InflightRegionDescriptor.MAX_QUEUE_SIZE) {
            throw new VhostUserProtocolException(
                    id, "queue_size " + queueSize + " is not a valid " + (packed ? "packed" : "split") + " ring size");
        }
    }

    /**
     * Maps {@code [offset, offset + sizeBytes)} of {@code fd} (taken: closed on failure) and makes it the session's
     * inflight buffer: the running rings are stopped (drained), the old buffer unmapped, and the rings restarted over
     * the new one.
     */
    private void installInflight(
            int id,
            int fd,
            long offsetBytes,
            long sizeBytes,
            int numQueues,
            int queueSize,
            boolean packed,
            boolean fromFrontEnd,
            String origin) {
        Arena arena = Arena.ofShared();
        MemorySegment buffer;
        try {
            MemorySegment whole =
                    Mman.mmap(offsetBytes + sizeBytes, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, fd, 0, arena);
            buffer = whole.asSlice(offsetBytes, sizeBytes);
        } catch (RuntimeException e) {
            arena.close();
            VhostUserConnection.closeQuietly(fd);
            throw new VhostUserProtocolException(id, "cannot map the inflight buffer: " + e.getMessage(), e);
        }
        List<Vring> stopped = stopAllRunning(id);
        releaseInflight();
        inflight = new InflightBuffer(fd, arena, buffer, numQueues, queueSize, packed, fromFrontEnd);
        device.fdReceived("inflight", 0, fd);
        info(name + ": inflight buffer of " + sizeBytes + " bytes, " + numQueues + " queues of " + queueSize + ", "
                + (packed ? "packed" : "split") + " layout (" + origin + ")");
        restartAll(id, stopped);
    }

    /** Unmaps the inflight buffer and closes its fd (the front-end keeps its own copy). */
    private void releaseInflight() {
        if (inflight == null) {
            return;
        }
        try {
            inflight.arena().close();
        } catch (IllegalStateException e) {
            LOG.log(Level.ERROR, name + ": inflight buffer still in use, not unmapped", e);
        }
        replaceFd("inflight", 0, inflight.fd(), -1);
        inflight = null;
    }

    /**
     * The queue's inflight region when the ring starts (vhost-user.rst "Inflight I/O tracking", libvhost-user {@code
     * vu_check_queue_inflights}): initialised if new, else recovered. After a reconnect (the buffer came with {@code
     * SET_INFLIGHT_FD}) the ring resumes at {@code used_idx + inflight count}, and the device resubmits the heads in
     * flight in counter order; a restored session keeps the base it was given.
     *
     * @return what the device writes and resubmits, or null if the buffer does not cover the queue
     */
    private VringInflight startInflight(int id, Vring v, Virtqueue vq) {
        InflightBuffer b = inflight;
        if (b == null || v.index >= b.numQueues()) {
            return null;
        }
        if (b.packed() != vq.packed()) {
            throw new VhostUserProtocolException(
                    id,
                    "queue " + v.index + ": the inflight buffer is laid out for " + (b.packed() ? "packed" : "split")
                            + " rings, the ring is " + (vq.packed() ? "packed" : "split"));
        }
        if (b.queueSize() != v.num) {
            throw new VhostUserProtocolException(
                    id,
                    "queue " + v.index + ": size " + v.num + " differs from the inflight buffer's queue_size "
                            + b.queueSize());
        }
        if (vq.packed()) {
            return startPackedInflight(id, v, (PackedVirtqueue) vq, b);
        }
        SplitVirtqueue split = (SplitVirtqueue) vq;
        InflightRegionSplit region;
        InflightSplitRecovery recovery;
        try {
            region = new InflightRegionSplit(
                    InflightRegionDescriptor.queueRegion(b.buffer(), v.index, b.queueSize(), false),
                    v.index,
                    b.queueSize(),
                    StoreObserver.NONE);
            recovery = region.start(split.usedIdxInRingAcquire());
        } catch (JournalException | IllegalArgumentException e) {
            throw new VhostUserProtocolException(id, "queue " + v.index + ": " + e.getMessage(), e);
        }
        if (!recovery.fresh() && b.fromFrontEnd()) {
            // libvhost-user: last_avail_idx = shadow_avail_idx = used_idx + inuse
            split.lastAvailIdx(recovery.lastAvailIdx());
        }
        if (!recovery.resubmit().isEmpty() || recovery.clearedBatchSize() != 0) {
            info(name + ": queue " + v.index + ": inflight region recovered: used_idx " + recovery.usedIdx() + ", "
                    + recovery.resubmit().size() + " in flight, torn batch of " + recovery.clearedBatchSize()
                    + " cleared");
        }
        return VringInflight.ofSplit(region, recovery, b.fromFrontEnd());
    }

    /**
     * {@link #startInflight} for a packed ring: a new region starts at the ring's used position; a recovered one wins
     * over {@code SET_VRING_BASE} after a reconnect, for both positions and wrap counters (QEMU does not restore a
     * packed ring's indexes after a back-end crash, SPDK issue #3070).
     */
    private VringInflight startPackedInflight(int id, Vring v, PackedVirtqueue vq, InflightBuffer b) {
        InflightRegionPacked region;
        InflightPackedRecovery recovery;
        int used = vq.usedIdx();
        try {
            region = new InflightRegionPacked(
                    InflightRegionDescriptor.queueRegion(b.buffer(), v.index, b.queueSize(), true),
                    v.index,
                    b.queueSize(),
                    StoreObserver.NONE);
            recovery = region.start(
                    used & PackedRingDescriptor.VRING_BASE_OFFSET_MASK,
                    (used & PackedRingDescriptor.VRING_BASE_WRAP_MASK) != 0,
                    vq::ringDescFlags);
        } catch (JournalException | IllegalArgumentException e) {
            throw new VhostUserProtocolException(id, "queue " + v.index + ": " + e.getMessage(), e);
        }
        if (!recovery.fresh() && b.fromFrontEnd()) {
            vq.lastAvailIdx(PackedRingDescriptor.encodeIndex(recovery.lastAvailIdx(), recovery.lastAvailWrapCounter()));
            vq.usedIdx(PackedRingDescriptor.encodeIndex(recovery.usedIdx(), recovery.usedWrapCounter()));
        }
        if (!recovery.fresh()) {
            info(name + ": queue " + v.index + ": inflight region recovered: used_idx " + recovery.usedIdx() + ", "
                    + recovery.resubmit().size() + " in flight, avail " + recovery.lastAvailIdx() + ", last update "
                    + recovery.outcome());
        }
        return VringInflight.ofPacked(region, recovery, b.fromFrontEnd());
    }

    private VhostUserPayload handleUnsupported(VhostUserRequest request) {
        throw new VhostUserProtocolException(request.id(), "not supported by this back-end");
    }

    // ---- rings ----

    private Vring vring(int id, int index) {
        if (Integer.compareUnsigned(index, maxQueues) >= 0) {
            throw new VhostUserProtocolException(
                    id, "queue index " + Integer.toUnsignedString(index) + " >= " + maxQueues + " queues");
        }
        return vrings[index];
    }

    private VhostUserPayload handleSetVringNum(MemorySegment payload) {
        int id = VhostUserRequest.VHOST_USER_SET_VRING_NUM.id();
        VhostUserVringState state = VhostUserVringState.decode(id, payload);
        Vring v = vring(id, state.index());
        if (!isValidQueueSize(state.num())) {
            throw new VhostUserProtocolException(
                    id,
                    "queue " + v.index + ": size " + Integer.toUnsignedString(state.num())
                            + (packed() ? " is not in 1.." : " is not a power of two in 1..") + MAX_QUEUE_SIZE);
        }
        if (v.running) {
            throw new VhostUserProtocolException(id, "queue " + v.index + ": size changed while the ring runs");
        }
        v.num = state.num();
        startIfReady(id, v);
        return null;
    }

    private VhostUserPayload handleSetVringAddr(MemorySegment payload) {
        int id = VhostUserRequest.VHOST_USER_SET_VRING_ADDR.id();
        VhostUserVringAddr addr = VhostUserVringAddr.decode(id, payload);
        Vring v = vring(id, addr.index());
        // an address outside the memory table is refused now, not when the ring starts
        int num = Math.max(v.num, 1);
        translate(id, v, "descriptor table", addr.descUserAddr(), descLengthBytes(num));
        translate(id, v, "available ring", addr.availUserAddr(), availLengthBytes(num));
        translate(id, v, "used ring", addr.usedUserAddr(), usedLengthBytes(num));
        if (v.running
                && v.addr.descUserAddr() == addr.descUserAddr()
                && v.addr.availUserAddr() == addr.availUserAddr()
                && v.addr.usedUserAddr() == addr.usedUserAddr()) {
            // QEMU re-sends the addresses of a running ring to switch used-ring logging on or off
            v.addr = addr;
            return null;
        }
        stopRing(id, v);
        v.addr = addr;
        startIfReady(id, v);
        return null;
    }

    private VhostUserPayload handleSetVringBase(MemorySegment payload) {
        int id = VhostUserRequest.VHOST_USER_SET_VRING_BASE.id();
        VhostUserVringState state = VhostUserVringState.decode(id, payload);
        Vring v = vring(id, state.index());
        if (!packed() && (state.num() & ~U16_MASK) != 0) {
            // vhost-user.rst "A vring descriptor index for split virtqueues": bits 16-31 reserved; for packed rings
            // they hold the used index ("Vring descriptor indices for packed virtqueues"), checked when the ring starts
            throw new VhostUserProtocolException(
                    id, "queue " + v.index + ": base 0x" + Integer.toHexString(state.num()) + " has reserved bits set");
        }
        if (v.running) {
            throw new VhostUserProtocolException(id, "queue " + v.index + ": base changed while the ring runs");
        }
        v.base = state.num();
        v.baseSet = true;
        startIfReady(id, v);
        return null;
    }

    private VhostUserPayload handleGetVringBase(MemorySegment payload) {
        int id = VhostUserRequest.VHOST_USER_GET_VRING_BASE.id();
        VhostUserVringState state = VhostUserVringState.decode(id, payload);
        Vring v = vring(id, state.index());
        // vhost-user.rst "Ring states": GET_VRING_BASE stops the ring
        v.started = false;
        stopRing(id, v);
        return new VhostUserVringState(state.index(), v.base);
    }

    private VhostUserPayload handleSetVringKick(MemorySegment payload, ReceivedFds fds) {
        int id = VhostUserRequest.VHOST_USER_SET_VRING_KICK.id();
        VhostUserVringFd request = VhostUserVringFd.decode(id, payload);
        Vring v = vring(id, request.index());
        boolean hasFd = checkVringFd(id, request, fds);
        stopRing(id, v);
        int fd = hasFd ? fds.take(0) : -1;
        v.kickFd = replaceFd("kick", v.index, v.kickFd, fd);
        if (fd >= 0) {
            device.fdReceived("kick", v.index, fd);
        }
        // vhost-user.rst "Ring states": the ring starts on SET_VRING_KICK
        v.started = true;
        startIfReady(id, v);
        return null;
    }

    private VhostUserPayload handleSetVringCall(MemorySegment payload, ReceivedFds fds) {
        int id = VhostUserRequest.VHOST_USER_SET_VRING_CALL.id();
        VhostUserVringFd request = VhostUserVringFd.decode(id, payload);
        Vring v = vring(id, request.index());
        boolean hasFd = checkVringFd(id, request, fds);
        stopRing(id, v);
        int fd = hasFd ? fds.take(0) : -1;
        v.callFd = replaceFd("call", v.index, v.callFd, fd);
        if (fd >= 0) {
            device.fdReceived("call", v.index, fd);
        }
        startIfReady(id, v);
        return null;
    }

    private VhostUserPayload handleSetVringErr(MemorySegment payload, ReceivedFds fds) {
        int id = VhostUserRequest.VHOST_USER_SET_VRING_ERR.id();
        VhostUserVringFd request = VhostUserVringFd.decode(id, payload);
        Vring v = vring(id, request.index());
        boolean hasFd = checkVringFd(id, request, fds);
        stopRing(id, v);
        int fd = hasFd ? fds.take(0) : -1;
        v.errFd = replaceFd("err", v.index, v.errFd, fd);
        if (fd >= 0) {
            device.fdReceived("err", v.index, fd);
        }
        startIfReady(id, v);
        return null;
    }

    private VhostUserPayload handleSetVringEnable(MemorySegment payload) {
        int id = VhostUserRequest.VHOST_USER_SET_VRING_ENABLE.id();
        VhostUserVringState state = VhostUserVringState.decode(id, payload);
        Vring v = vring(id, state.index());
        if (state.num() != 0 && state.num() != 1) {
            throw new VhostUserProtocolException(
                    id, "queue " + v.index + ": enable must be 0 or 1, got " + Integer.toUnsignedString(state.num()));
        }
        v.enabled = state.num() == 1;
        if (v.enabled) {
            startIfReady(id, v);
        } else {
            stopRing(id, v);
        }
        return null;
    }

    /** Does SET_VRING_KICK/CALL/ERR carry its fd (false with VHOST_USER_VRING_NOFD_MASK)? Checks the count. */
    private static boolean checkVringFd(int id, VhostUserVringFd request, ReceivedFds fds) {
        if (request.noFd()) {
            if (fds.count() != 0) {
                throw new VhostUserProtocolException(
                        id, "queue " + request.index() + ": VHOST_USER_VRING_NOFD_MASK set but an fd came (closed)");
            }
            return false;
        }
        if (fds.count() != 1) {
            throw new VhostUserProtocolException(id, "queue " + request.index() + ": missing its fd");
        }
        return true;
    }

    private boolean eventIdx() {
        return (ackedFeatures & VirtioBlk.VIRTIO_RING_F_EVENT_IDX_MASK) != 0;
    }

    /** VIRTIO_F_RING_PACKED negotiated: the rings are packed (virtio 1.2 §2.8). */
    private boolean packed() {
        return featuresNegotiated && (ackedFeatures & VirtioBlk.VIRTIO_F_RING_PACKED_MASK) != 0;
    }

    private long descLengthBytes(int num) {
        return packed() ? PackedRingDescriptor.descRingLengthBytes(num) : SplitRingDescriptor.descTableLengthBytes(num);
    }

    /** Split: the available ring; packed: the Driver Area (event suppression, 4 bytes). */
    private long availLengthBytes(int num) {
        return packed()
                ? PackedRingDescriptor.PVIRTQ_EVENT_SUPPRESS_LENGTH_BYTES
                : SplitRingDescriptor.availRingLengthBytes(num, eventIdx());
    }

    /** Split: the used ring; packed: the Device Area (event suppression, 4 bytes). */
    private long usedLengthBytes(int num) {
        return packed()
                ? PackedRingDescriptor.PVIRTQ_EVENT_SUPPRESS_LENGTH_BYTES
                : SplitRingDescriptor.usedRingLengthBytes(num, eventIdx());
    }

    private boolean isValidQueueSize(int num) {
        return packed() ? PackedRingDescriptor.isValidQueueSize(num) : SplitRingDescriptor.isValidQueueSize(num);
    }

    /** Front-end virtual address → guest physical address of a whole ring part, or the protocol error. */
    private long translate(int id, Vring v, String what, long uva, long lengthBytes) {
        long gpa = memory.uvaToGpa(uva, lengthBytes);
        if (gpa == -1) {
            throw new VhostUserProtocolException(
                    id,
                    "queue " + v.index + ": " + what + " [0x" + Long.toHexString(uva) + ", +" + lengthBytes
                            + ") is not inside one guest memory region");
        }
        return gpa;
    }

    /** Starts the ring on the device if it is started, enabled and complete; otherwise does nothing. */
    private void startIfReady(int id, Vring v) {
        if (v.running
                || !v.started
                || !v.enabled
                || v.num == 0
                || v.addr == null
                || !featuresNegotiated
                || memory.regionCount() == 0) {
            return;
        }
        long descGpa = translate(id, v, "descriptor table", v.addr.descUserAddr(), descLengthBytes(v.num));
        long availGpa = translate(id, v, "available ring", v.addr.availUserAddr(), availLengthBytes(v.num));
        long usedGpa = translate(id, v, "used ring", v.addr.usedUserAddr(), usedLengthBytes(v.num));
        boolean indirect = (ackedFeatures & VirtioBlk.VIRTIO_RING_F_INDIRECT_DESC_MASK) != 0;
        Virtqueue vq;
        try {
            // maxSegments = ring size: virtio 1.2 §2.7.5.3.1 / §2.8 forbid chains longer than the queue
            vq = packed()
                    ? new PackedVirtqueue(
                            v.index, v.num, memory, descGpa, availGpa, usedGpa, eventIdx(), v.num, indirect)
                    : new SplitVirtqueue(
                            v.index, v.num, memory, descGpa, availGpa, usedGpa, eventIdx(), v.num, indirect);
            // split: next avail index = base, used idx read from the used ring ("the device is supposed to read the
            // next index in the Used Ring"); packed: both positions and wrap counters from the base
            // a packed ring the front-end never positioned starts as virtio 1.2 §2.8.1 says: offsets 0, wrap counters 1
            vq.vringBase(packed() && !v.baseSet ? PackedRingDescriptor.VRING_BASE_INITIAL : v.base);
        } catch (IllegalArgumentException e) {
            throw new VhostUserProtocolException(id, "queue " + v.index + ": " + e.getMessage(), e);
        }
        VringInflight vringInflight = startInflight(id, v, vq);
        try {
            device.startQueue(v.index, vq, v.kickFd, v.callFd, v.errFd, vringInflight);
        } catch (RuntimeException e) {
            throw new VhostUserProtocolException(id, "queue " + v.index + ": device failed to start it", e);
        }
        v.running = true;
        if (v.callFd >= 0) {
            // one spurious interrupt after every (re)start: a completion published while no back-end listened
            // (a reconnect) is not left unnoticed; libvhost-user does the same on SET_VRING_CALL
            try {
                Eventfd.eventfd_write(v.callFd, 1);
            } catch (ErrnoException e) {
                LOG.log(Level.WARNING, name + ": queue " + v.index + ": call eventfd write failed", e);
            }
        }
    }

    /**
     * Stops the ring on the device if it runs, saving the next avail index.
     *
     * @return whether it was running
     * @throws VhostUserProtocolException if the device failed to stop it (the ring counts as stopped)
     */
    private boolean stopRing(int id, Vring v) {
        if (!v.running) {
            return false;
        }
        v.running = false;
        try {
            int base = device.stopQueue(v.index);
            // split rings carry a u16 (bits 16-31 reserved), packed rings both halves
            v.base = packed() ? base : base & (int) U16_MASK;
            v.baseSet = true;
        } catch (RuntimeException e) {
            throw new VhostUserProtocolException(id, "queue " + v.index + ": device failed to stop it", e);
        }
        return true;
    }

    /** Stops every running ring (errors are logged); returns those that ran. */
    private List<Vring> stopAllRunning(int id) {
        List<Vring> stopped = new ArrayList<>();
        for (Vring v : vrings) {
            try {
                if (stopRing(id, v)) {
                    stopped.add(v);
                }
            } catch (VhostUserProtocolException e) {
                stopped.add(v);
                protocolError(e);
            }
        }
        return stopped;
    }

    /** Starts each ring that is ready; the first failure is thrown after all were tried. */
    private void restartAll(int id, List<Vring> candidates) {
        VhostUserProtocolException first = null;
        for (Vring v : candidates) {
            try {
                startIfReady(id, v);
            } catch (VhostUserProtocolException e) {
                if (first == null) {
                    first = e;
                } else {
                    protocolError(e);
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }

    // ---- memory ----

    private VhostUserPayload handleSetMemTable(MemorySegment payload, ReceivedFds fds) {
        int id = VhostUserRequest.VHOST_USER_SET_MEM_TABLE.id();
        VhostUserMemory table = VhostUserMemory.decode(id, payload);
        if (fds.count() != table.nregions()) {
            throw new VhostUserProtocolException(
                    id, table.nregions() + " regions but " + fds.count() + " fds (closed)");
        }
        List<MappedRegion> next = new ArrayList<>();
        List<MappedRegion> added = new ArrayList<>();
        try {
            for (int i = 0; i < table.nregions(); i++) {
                VhostUserMemoryRegion region = table.regions().get(i);
                int fd = fds.take(i);
                MappedRegion kept = find(region, next);
                if (kept != null) {
                    // the same region again (QEMU re-sends the whole table): keep the mapping, drop the new fd
                    VhostUserConnection.closeQuietly(fd);
                    next.add(kept);
                } else {
                    MappedRegion mapped = mapRegion(id, region, fd);
                    added.add(mapped);
                    next.add(mapped);
                }
            }
        } catch (VhostUserProtocolException e) {
            added.forEach(this::release);
            throw e;
        }
        List<MappedRegion> removed = new ArrayList<>(regions);
        removed.removeAll(next);
        applyMemoryChange(id, next, added, removed);
        return null;
    }

    private VhostUserPayload handleAddMemReg(MemorySegment payload, ReceivedFds fds) {
        int id = VhostUserRequest.VHOST_USER_ADD_MEM_REG.id();
        VhostUserMemoryRegion region = VhostUserMemRegMsg.decode(id, payload).region();
        int fd = fds.take(0);
        if (find(region, List.of()) != null) {
            VhostUserConnection.closeQuietly(fd);
            return null;
        }
        if (regions.size() >= device.maxMemSlots()) {
            VhostUserConnection.closeQuietly(fd);
            throw new VhostUserProtocolException(id, "all " + device.maxMemSlots() + " memory slots are in use");
        }
        MappedRegion mapped = mapRegion(id, region, fd);
        List<MappedRegion> next = new ArrayList<>(regions);
        next.add(mapped);
        applyMemoryChange(id, next, List.of(mapped), List.of());
        return null;
    }

    /** vhost-user.rst REM_MEM_REG: the region is named by guest address, user address and size; an fd is closed. */
    private VhostUserPayload handleRemMemReg(MemorySegment payload) {
        int id = VhostUserRequest.VHOST_USER_REM_MEM_REG.id();
        VhostUserMemoryRegion region = VhostUserMemRegMsg.decode(id, payload).region();
        MappedRegion found = null;
        for (MappedRegion m : regions) {
            if (m.description.sameRange(region)) {
                found = m;
                break;
            }
        }
        if (found == null) {
            throw new VhostUserProtocolException(id, "no such region: " + region);
        }
        List<MappedRegion> next = new ArrayList<>(regions);
        next.remove(found);
        applyMemoryChange(id, next, List.of(), List.of(found));
        return null;
    }

    /** A current region with exactly this description that {@code taken} does not hold yet, or null. */
    private MappedRegion find(VhostUserMemoryRegion region, List<MappedRegion> taken) {
        for (MappedRegion m : regions) {
            if (m.description.equals(region) && !taken.contains(m)) {
                return m;
            }
        }
        return null;
    }

    /**
     * Maps {@code [0, mmap_offset + memory_size)} of the fd shared and read-write, and keeps the region's slice. Takes
     * the fd: closed on failure.
     */
    private MappedRegion mapRegion(int id, VhostUserMemoryRegion region, int fd) {
        return mapRegion(id, region, fd, NEXT_REGION_ID.getAndIncrement());
    }

    /** {@link #mapRegion(int, VhostUserMemoryRegion, int)} under a given region id (a restored session's). */
    private MappedRegion mapRegion(int id, VhostUserMemoryRegion region, int fd, int regionId) {
        // ids handed out later must not collide with a restored one
        NEXT_REGION_ID.accumulateAndGet(regionId + 1, Math::max);
        long lengthBytes = region.mappingLengthBytes();
        Arena arena = null;
        try {
            Stat.FileStat stat = Stat.fstat(fd);
            if (stat.isRegularFile() && stat.sizeBytes() < lengthBytes) {
                // touching a mapping past the end of the file raises SIGBUS, which would take the process down
                throw new VhostUserProtocolException(
                        id, "region fd holds " + stat.sizeBytes() + " bytes, the region needs " + lengthBytes);
            }
            arena = Arena.ofShared();
            MemorySegment whole = Mman.mmap(
                    lengthBytes, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED | Mman.MAP_NORESERVE, fd, 0, arena);
            GuestMemoryRegion mapped = new GuestMemoryRegion(
                    regionId,
                    region.guestPhysAddr(),
                    region.memorySize(),
                    region.userAddr(),
                    region.mmapOffset(),
                    fd,
                    whole.asSlice(region.mmapOffset(), region.memorySize()));
            device.fdReceived("mem", mapped.regionId(), fd);
            return new MappedRegion(region, mapped, arena);
        } catch (RuntimeException e) {
            if (arena != null) {
                arena.close();
            }
            VhostUserConnection.closeQuietly(fd);
            if (e instanceof VhostUserProtocolException p) {
                throw p;
            }
            throw new VhostUserProtocolException(id, "cannot map " + region + ": " + e.getMessage(), e);
        }
    }

    /**
     * Switches to a new memory table: stops the running rings, tells the device, swaps, unmaps what was removed and
     * restarts the rings from their saved indexes. On failure the old table stays and the added regions are unmapped.
     */
    private void applyMemoryChange(
            int id, List<MappedRegion> next, List<MappedRegion> added, List<MappedRegion> removed) {
        if (added.isEmpty() && removed.isEmpty()) {
            return;
        }
        GuestMemory newMemory;
        try {
            newMemory = new GuestMemory(guestRegions(next));
        } catch (IllegalArgumentException e) {
            added.forEach(this::release);
            throw new VhostUserProtocolException(id, "invalid memory table: " + e.getMessage(), e);
        }
        List<Vring> stopped = stopAllRunning(id);
        try {
            device.memoryChanged(newMemory, guestRegions(added), guestRegions(removed));
        } catch (RuntimeException e) {
            added.forEach(this::release);
            restartAll(id, stopped);
            throw new VhostUserProtocolException(id, "device refused the memory table", e);
        }
        memory = newMemory;
        regions.clear();
        regions.addAll(next);
        removed.forEach(this::release);
        restartAll(id, stopped);
    }

    private static List<GuestMemoryRegion> guestRegions(List<MappedRegion> mapped) {
        List<GuestMemoryRegion> list = new ArrayList<>(mapped.size());
        for (MappedRegion m : mapped) {
            list.add(m.region);
        }
        return list;
    }

    /** Unmaps a region and closes its fd. */
    private void release(MappedRegion m) {
        try {
            m.arena.close();
        } catch (IllegalStateException e) {
            LOG.log(Level.ERROR, name + ": region " + m.region.regionId() + " still in use, not unmapped", e);
        }
        replaceFd("mem", m.region.regionId(), m.region.fd(), -1);
    }

    /** Closes {@code oldFd} (reporting it released) and returns {@code newFd}. */
    private int replaceFd(String what, int index, int oldFd, int newFd) {
        if (oldFd >= 0 && oldFd != newFd) {
            try {
                device.fdReleased(what, index, oldFd);
            } catch (RuntimeException e) {
                LOG.log(Level.WARNING, name + ": device.fdReleased failed", e);
            }
            VhostUserConnection.closeQuietly(oldFd);
        }
        return newFd;
    }

    /**
     * The session's inflight buffer: the fd, the mapping ({@code mmap_size} bytes from {@code mmap_offset}) and the
     * shape it was made for; {@code fromFrontEnd}: it came with {@code SET_INFLIGHT_FD} (a reconnect may follow).
     */
    private record InflightBuffer(
            int fd,
            Arena arena,
            MemorySegment buffer,
            int numQueues,
            int queueSize,
            boolean packed,
            boolean fromFrontEnd) {}

    /** One region as mapped: the front-end's description, the guest view and the arena that unmaps it. */
    private record MappedRegion(VhostUserMemoryRegion description, GuestMemoryRegion region, Arena arena) {}

    /** The back-end's state of one virtqueue. */
    private static final class Vring {
        final int index;
        int num;
        VhostUserVringAddr addr;
        /**
         * The vring base: from SET_VRING_BASE, or saved when the ring stopped. Split: the next avail index (u16);
         * packed: avail and used positions with their wrap counters.
         */
        int base;
        /** {@link #base} came from SET_VRING_BASE or a stop (not the reset value). */
        boolean baseSet;

        int kickFd = -1;
        int callFd = -1;
        int errFd = -1;
        /** "Ring states": started by SET_VRING_KICK, stopped by GET_VRING_BASE. */
        boolean started;
        /** "Ring states": SET_VRING_ENABLE, or SET_FEATURES without VHOST_USER_F_PROTOCOL_FEATURES. */
        boolean enabled;
        /** The device processes it (startQueue called, stopQueue not yet). */
        boolean running;

        Vring(int index) {
            this.index = index;
        }

        void reset() {
            num = 0;
            addr = null;
            base = 0;
            baseSet = false;
            started = false;
            enabled = false;
            running = false;
        }
    }

    /** The fds of one message: those a handler takes are its own, the others are closed when the message is done. */
    private static final class ReceivedFds {
        private final int[] fds;
        private final boolean[] taken;

        ReceivedFds(int[] fds) {
            this.fds = fds;
            this.taken = new boolean[fds.length];
        }

        int count() {
            return fds.length;
        }

        int take(int i) {
            taken[i] = true;
            return fds[i];
        }

        void closeUnclaimed() {
            for (int i = 0; i < fds.length; i++) {
                if (!taken[i]) {
                    VhostUserConnection.closeQuietly(fds[i]);
                }
            }
        }
    }
}
