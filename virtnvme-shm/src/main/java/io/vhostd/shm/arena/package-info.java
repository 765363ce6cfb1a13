/**
 * The master's shared-memory arena: one memfd (2 MiB huge pages when available, otherwise plain pages) that is mapped
 * by the master and by every process it hands the fd to, with a bump allocator for queue pairs and journal regions.
 * Used by the master (creates) and the slave and migration processes (attach).
 */
package io.vhostd.shm.arena;
