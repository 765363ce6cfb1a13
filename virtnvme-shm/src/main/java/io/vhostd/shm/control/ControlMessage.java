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
    @JsonSubTypes.Type(value = ControlMessage.ControllerStats.class, name = "controller_stats"),
    @JsonSubTypes.Type(value = ControlMessage.AdoptSession.class, name = "adopt_session"),
    @JsonSubTypes.Type(value = ControlMessage.SessionAdopted.class, name = "session_adopted"),
    @JsonSubTypes.Type(value = ControlMessage.RemoveController.class, name = "remove_controller"),
    @JsonSubTypes.Type(value = ControlMessage.ControllerRemoved.class, name = "controller_removed"),
    @JsonSubTypes.Type(value = ControlMessage.ReleaseController.class, name = "release_controller"),
    @JsonSubTypes.Type(value = ControlMessage.ControllerReleased.class, name = "controller_released"),
    @JsonSubTypes.Type(value = ControlMessage.CarryOver.class, name = "carry_over"),
    @JsonSubTypes.Type(value = ControlMessage.Rejoin.class, name = "rejoin"),
    @JsonSubTypes.Type(value = ControlMessage.RejoinController.class, name = "rejoin_controller"),
    @JsonSubTypes.Type(value = ControlMessage.RejoinDone.class, name = "rejoin_done"),
    @JsonSubTypes.Type(value = ControlMessage.Rejoined.class, name = "rejoined"),
    @JsonSubTypes.Type(value = ControlMessage.PrepareController.class, name = "prepare_controller"),
    @JsonSubTypes.Type(value = ControlMessage.ControllerPrepared.class, name = "controller_prepared"),
    @JsonSubTypes.Type(value = ControlMessage.CommitController.class, name = "commit_controller"),
})
public sealed interface ControlMessage {

    /** Version of this message set; a peer with another version is refused. */
    int PROTOCOL_VERSION = 1;

    /**
     * slave → master, first message. No fds. The versions are those of the layouts the slave reads and writes:
     * {@code journalVersion} of {@code journal/spec/journal.md} (JournalDescriptor.VERSION), {@code virtNvmeVersion}
     * of {@code virtnvme.md} (VirtNvmeDescriptor.VERSION), both {@code (major << 16) | (minor << 8) | patch}. The
     * master refuses a slave whose protocol version or whose journal / VirtNvme major version differs from its own
     * (rule 1; issue #4 rolling upgrade).
     */
    record Hello(int protocolVersion, int pid, String build, int journalVersion, int virtNvmeVersion)
            implements ControlMessage {}

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
     * master → slave, before the {@link AddController} of {@code controller}: the controller's statistics region
     * ({@code virtnvme-shm/spec/stats.md}), formatted and owned by the master, {@code lengthBytes} long; the slave's
     * data path writes its counters there (issue #5). fds: [stats memfd]. No answer.
     */
    record ControllerStats(String controller, long lengthBytes) implements ControlMessage {}

    /**
     * master → standby slave, before the {@link ControllerJournal} and {@link AddController} of {@code controller}:
     * the slave that served the controller died; continue its session from the journal (issue #4). fds: one per
     * entry of {@code fds}, in order: what the master held in custody ({@code what} connection, kick, call, err, mem,
     * backend_req; {@code index} a queue index or region id). Answered by {@link SessionAdopted}.
     */
    record AdoptSession(String controller, List<AdoptedFd> fds) implements ControlMessage {}

    /** One fd of {@link AdoptSession}, named as in {@link Custody}. */
    record AdoptedFd(String what, int index) {}

    /**
     * slave → master: the session of {@code controller} runs again ({@code error} null) or could not be adopted.
     * {@code resumedNs}: CLOCK_MONOTONIC (System.nanoTime on Linux) when its queues were back on the data path, i.e.
     * when the slave could fetch again; 0 on error.
     */
    record SessionAdopted(String controller, String error, long resumedNs) implements ControlMessage {}

    /**
     * master → serving slave ({@code vhost_delete_controller}, issue #5): stop serving {@code name} for good. The slave
     * stops accepting, closes the session if one runs (the front-end sees its connection close; the slave sends the
     * usual {@link CustodyRelease}s), stops the controller's agent (it touches none of its queue pairs afterwards),
     * closes its copy of the listening socket and unmaps the journal. No fds. Answered by {@link ControllerRemoved}.
     */
    record RemoveController(String name) implements ControlMessage {}

    /**
     * slave → master, answer to {@link RemoveController}: {@code error} null when the controller is gone (also when the
     * slave did not serve it), else why not. No fds.
     */
    record ControllerRemoved(String name, String error) implements ControlMessage {}

    /**
     * master → serving slave (issue #4 rolling upgrade): give up {@code controller}. With {@code checkOnly} the slave
     * only answers whether it could (its session, if any, is journaled and negotiated) and changes nothing. Otherwise
     * it stops accepting on the listening socket, stops reading the vhost-user connection at a message boundary,
     * stops fetching from the rings and consuming completions, and reports the requests whose VirtNvme commands are
     * still at the device ({@link CarriedQueue}: the next slave completes them); only when there are too many to
     * report it waits for them instead (drain). From then on it touches none of the controller's rings, queue pairs,
     * sockets, eventfds or journal. No fds. Answered by {@link ControllerReleased}.
     */
    record ReleaseController(String controller, boolean checkOnly) implements ControlMessage {}

    /**
     * slave → master, answer to {@link ReleaseController}. {@code error} null: released (or, for a check, releasable);
     * otherwise why not, and the slave keeps serving the controller unchanged. {@code stoppedFetchingNs} and {@code
     * releasedNs} are CLOCK_MONOTONIC (comparable across processes of one host): when the slave stopped fetching from
     * the guest's rings and when it had let go of them; 0 for a check. {@code drainedRequests}: requests it waited for
     * (0 unless it drained); {@code carried}: per started queue, the requests it hands over with their commands still
     * at the device (empty when it drained or no session ran). No fds.
     */
    record ControllerReleased(
            String controller,
            String error,
            long stoppedFetchingNs,
            long releasedNs,
            int drainedRequests,
            List<CarriedQueue> carried)
            implements ControlMessage {}

    /**
     * The requests of one virtqueue that a releasing slave leaves in flight (issue #4 rolling upgrade): their VirtNvme
     * commands are submitted and not completed yet; the next slave completes them. {@code heads[i]} is a request (its
     * head descriptor index; the chain is read again from the descriptor table, which the guest may not change while
     * the head is in flight) and {@code states[i]} its state: bits 0..7 the virtio-blk status it completes with so far
     * ({@code VIRTIO_BLK_S_*}), bit 8 {@link #FLUSH_AFTER_MASK}. {@code cids[j]} is a command still at the device and
     * {@code cidHeads[j]} the request it works for. Every head is in the journal's in-flight set of the queue.
     */
    record CarriedQueue(
            int index, List<Integer> heads, List<Integer> states, List<Integer> cids, List<Integer> cidHeads) {
        /** State bit: a write-through FLUSH follows once the request's commands completed. */
        public static final int FLUSH_AFTER_MASK = 1 << 8;
    }

    /**
     * master → new slave, before the {@link AdoptSession} of {@code controller} in a rolling upgrade: the requests the
     * old slave left in flight ({@link ControllerReleased#carried}); the new slave completes them into the queue pairs
     * instead of replaying them. No fds. No answer (the adoption's {@link SessionAdopted} covers it).
     */
    record CarryOver(String controller, List<CarriedQueue> queues) implements ControlMessage {}

    /**
     * slave → restarted master, first message of a re-adoption (issue #4 master restart, control-channel.md "Master
     * restart"): a slave whose master died kept serving and connected to the new master. The versions as in {@link
     * Hello}; {@code slaveId} the id the dead master gave it; {@code arenaSizeBytes} the arena it maps. Fds: the
     * arena memfd. Followed by one {@link RejoinController} per controller, the {@code custody} and {@code
     * register_region} messages of their sessions, then {@link RejoinDone}.
     */
    record Rejoin(
            int protocolVersion,
            int pid,
            String build,
            int journalVersion,
            int virtNvmeVersion,
            String slaveId,
            long arenaSizeBytes)
            implements ControlMessage {}

    /**
     * slave → restarted master: one controller the slave serves, as the dead master's {@link AddController} described
     * it. Fds: the listening vhost-user socket, per queue pair its SQ eventfd and CQ eventfd, the journal memfd
     * ({@code journalLengthBytes} long), then the stats memfd when {@code statsLengthBytes > 0}.
     */
    record RejoinController(
            String name,
            String bdev,
            int nsid,
            int numQueues,
            int maxSegments,
            List<QpairRef> qpairs,
            long journalLengthBytes,
            long statsLengthBytes)
            implements ControlMessage {}

    /** slave → restarted master: every controller of the re-adoption was sent. No fds. Answered by {@link Rejoined}. */
    record RejoinDone(List<String> controllers) implements ControlMessage {}

    /**
     * restarted master → slave: the re-adoption's result. {@code error} non-null: refused as a whole (the slave exits).
     * Otherwise per controller the queue pairs' resume points, or an error for a controller the master does not take
     * back (the slave closes it). No fds.
     */
    record Rejoined(String error, List<ControllerResume> controllers) implements ControlMessage {}

    /**
     * One controller of {@link Rejoined}: {@code error} null and, per queue pair, where the restarted master resumed
     * (virtnvme.md §10.2: {@code sqHead} h0, {@code cqTail} c0).
     */
    record ControllerResume(String name, String error, List<QpairResume> queues) {}

    /** A queue pair's resume point after a master restart (virtnvme.md §10.2), u32 indexes. */
    record QpairResume(int index, int sqHead, int cqTail) {}

    /**
     * master → new slave in a rolling upgrade, before the old slave releases the controller (issue #4,
     * control-channel.md "Rolling upgrade" step 2): everything of {@code controller} that does not depend on where the
     * old slave stops. The slave builds the controller as for {@link AddController} (its {@link ControllerStats} and
     * {@link ControllerJournal} come first) and starts its data-path thread, but neither accepts on the socket nor
     * touches the queue pairs' positions until {@link CommitController}. fds: as {@link AddController}. Answer:
     * {@link ControllerPrepared}.
     */
    record PrepareController(AddController controller) implements ControlMessage {}

    /**
     * slave → master, answer to {@link PrepareController}: {@code error} null when the controller waits for its
     * {@link CommitController}. No fds.
     */
    record ControllerPrepared(String name, String error) implements ControlMessage {}

    /**
     * master → new slave in a rolling upgrade, after the old slave's {@link ControllerReleased} (and after the
     * {@link AdoptSession} of {@code name} when a front-end is connected): take over the prepared controller. The slave
     * attaches to the queue pairs at their published positions, adopts the session (if one came) taking the
     * {@code carried} requests over as {@link CarryOver} says, and starts serving. No fds. Answer: {@link
     * SessionAdopted} always (also without a session: then {@code resumedNs} is when the controller started; an
     * unprepared {@code name} is answered with an error), then {@link ControllerListening} unless the controller could
     * not start.
     */
    record CommitController(String name, List<CarriedQueue> carried) implements ControlMessage {}
}
