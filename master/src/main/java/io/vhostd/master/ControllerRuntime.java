package io.vhostd.master;

import io.vhostd.master.bdev.Bdev;
import io.vhostd.master.engine.QpairBinding;
import io.vhostd.shm.control.ControlMessage;
import java.util.List;

/**
 * A controller as the master runs it: its bdev, its listening vhost-user socket (the master created it and keeps it),
 * and one VirtNvme queue pair per virtqueue.
 *
 * @param name controller name
 * @param type "vhost-user-blk"
 * @param bdev the bdev it serves
 * @param socketPath the vhost-user socket path
 * @param listenFd the listening socket (held by the master, a copy is handed to the slave)
 * @param numQueues virtqueues = queue pairs
 * @param serial the virtio-blk serial (GET_ID), at most 20 bytes
 * @param readOnly writes fail
 * @param qpairs where each queue pair is in the arena
 * @param bindings the queue pairs attached to the bdev's engine, in queue order
 */
public record ControllerRuntime(
        String name,
        String type,
        Bdev bdev,
        String socketPath,
        int listenFd,
        int numQueues,
        String serial,
        boolean readOnly,
        List<ControlMessage.QpairRef> qpairs,
        List<QpairBinding> bindings) {}
