package io.vhostd.shm.control;

import com.fasterxml.jackson.annotation.JsonSubTypes;
import com.fasterxml.jackson.annotation.JsonTypeInfo;
import java.util.List;

/**
 * One message of the master ↔ slave control channel ({@code spec/control-channel.md}). Each record names, in its
 * Javadoc, the fds that travel with it, in order. Messages come from a peer process: every receiver validates them.
 */
@JsonTypeInfo(use = JsonTypeInfo.Id.NAME, property = "type")
@JsonSubTypes({
    @JsonSubTypes.Type(value = ControlMessage.Hello.class, name = "hello"),
    @JsonSubTypes.Type(value = ControlMessage.Welcome.class, name = "welcome"),
    @JsonSubTypes.Type(value = ControlMessage.AddController.class, name = "add_controller"),
    @JsonSubTypes.Type(value = ControlMessage.ControllerListening.class, name = "controller_listening"),
    @JsonSubTypes.Type(value = ControlMessage.RegisterRegion.class, name = "register_region"),
    @JsonSubTypes.Type(value = ControlMessage.UnregisterRegion.class, name = "unregister_region"),
    @JsonSubTypes.Type(value = ControlMessage.Ack.class, name = "ack"),
    @JsonSubTypes.Type(value = ControlMessage.Custody.class, name = "custody"),
    @JsonSubTypes.Type(value = ControlMessage.CustodyRelease.class, name = "custody_release"),
    @JsonSubTypes.Type(value = ControlMessage.SessionState.class, name = "session_state"),
    @JsonSubTypes.Type(value = ControlMessage.Shutdown.class, name = "shutdown"),
    @JsonSubTypes.Type(value = ControlMessage.ControllerJournal.class, name = "controller_journal"),
    @JsonSubTypes.Type(value = ControlMessage.AdoptSession.class, name = "adopt_session"),
    @JsonSubTypes.Type(value = ControlMessage.SessionAdopted.class, name = "session_adopted"),
})
public sealed interface ControlMessage {

    /** Version of this message set; a peer with another version is refused. */
    int PROTOCOL_VERSION = 1;

    /** slave → master, first message. No fds. */
    record Hello(int protocolVersion, int pid, String build) implements ControlMessage {}

    /**
     * master → slave, answer to {@link Hello}. fds: [arena memfd]. The VirtNvme queue pairs of every controller live
     * in the arena at the offsets {@link AddController} gives.
     */
    record Welcome(int protocolVersion, String slaveId, long arenaSizeBytes) implements ControlMessage {}

    /**
     * master → slave: serve this controller. fds: [listening vhost-user socket], then for every queue pair in order
     * [submission eventfd, completion eventfd].
     */
    record AddController(
            String name,
            String bdev,
            int nsid,
            long capacityBytes,
            int blockSizeBytes,
            boolean readOnly,
            String serial,
            int numQueues,
            int maxSegments,
            List<QpairRef> qpairs)
            implements ControlMessage {}

    /** Where one VirtNvme queue pair sits in the arena. */
    record QpairRef(int qpairId, long arenaOffsetBytes, long lengthBytes) {}

    /** slave → master: the controller's socket is being accepted on. No fds. */
    record ControllerListening(String name) implements ControlMessage {}

    /**
     * slave → master: map this guest memory region and accept it in commands as {@code regionId}. fds: [region fd]
     * (mapped {@code mmapOffsetBytes + sizeBytes} long; the region starts at {@code mmapOffsetBytes}). Answered by an
     * {@link Ack} with the same {@code requestId}.
     */
    record RegisterRegion(long requestId, String controller, int regionId, long sizeBytes, long mmapOffsetBytes)
            implements ControlMessage {}

    /** slave → master: no command names this region any more; unmap it. Answered by an {@link Ack}. No fds. */
    record UnregisterRegion(long requestId, String controller, int regionId) implements ControlMessage {}

    /** Answer to a request; {@code error} is null on success. No fds. */
    record Ack(long requestId, String error) implements ControlMessage {}

    /**
     * slave → master: keep a copy of this fd (DESIGN §3 fd custody). {@code what} is one of connection, kick, call,
     * err, mem, backend_req; {@code index} a queue index or region id. fds: [the fd].
     */
    record Custody(String controller, String what, int index) implements ControlMessage {}

    /** slave → master: the fd held for (controller, what, index) is no longer used; close the copy. No fds. */
    record CustodyRelease(String controller, String what, int index) implements ControlMessage {}

    /** slave → master: the state of a controller's vhost-user session, for {@code vhost_get_controllers}. */
    record SessionState(
            String controller,
            boolean connected,
            long negotiatedFeatures,
            long protocolFeatures,
            List<QueueState> queues)
            implements ControlMessage {}

    /** One virtqueue as {@link SessionState} reports it. */
    record QueueState(int index, int size, boolean started, int lastAvailIdx, int usedIdx, int inflight) {}

    /** master → slave: close every session and exit. No fds. */
    record Shutdown(String reason) implements ControlMessage {}

    /**
     * master → slave, before the {@link AddController} of {@code controller}: the session journal region of the
     * controller ({@code journal/spec/journal.md}), formatted by the master, {@code lengthBytes} long. fds: [journal
     * memfd]. No answer.
     */
    record ControllerJournal(String controller, long lengthBytes) implements ControlMessage {}

    /**
     * master → standby slave, before the {@link ControllerJournal} and {@link AddController} of {@code controller}:
     * the slave that served the controller died; continue its session from the journal (issue #4). fds: one per
     * entry of {@code fds}, in order: what the master held in custody ({@code what} connection, kick, call, err, mem,
     * backend_req; {@code index} a queue index or region id). Answered by {@link SessionAdopted}.
     */
    record AdoptSession(String controller, List<AdoptedFd> fds) implements ControlMessage {}

    /** One fd of {@link AdoptSession}, named as in {@link Custody}. */
    record AdoptedFd(String what, int index) {}

    /** slave → master: the session of {@code controller} runs again ({@code error} null) or could not be adopted. */
    record SessionAdopted(String controller, String error) implements ControlMessage {}
}
