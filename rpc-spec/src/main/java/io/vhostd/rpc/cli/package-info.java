/**
 * The text layouts of {@code vhostctl}: pure functions from RPC results (JSON) to the layouts operators know from
 * sysstat's {@code iostat}, nvme-cli's {@code nvme smart-log} and blktrace's {@code blkparse}, plus a text histogram.
 * No I/O; unit-tested with fixed JSON.
 *
 * <p>Role: command-line client (neither master nor slave).
 */
package io.vhostd.rpc.cli;
