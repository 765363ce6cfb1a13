package io.vhostd.master.engine;

import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;

/**
 * A VirtNvme queue pair attached to a device engine.
 *
 * @param qpair the shared-memory queue pair (already formatted by the master)
 * @param sqEventFd eventfd the slave writes when the engine sleeps and new commands arrive
 * @param cqEventFd eventfd the engine writes when the slave sleeps and completions arrive
 * @param regions the guest memory the slave that owns this queue pair registered
 * @param nsid the volume id commands must carry
 */
public record QpairBinding(VirtNvmeQueuePair qpair, int sqEventFd, int cqEventFd, RegionTable regions, int nsid) {}
