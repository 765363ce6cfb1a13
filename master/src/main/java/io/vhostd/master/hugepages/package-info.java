/**
 * Reserving 2 MiB huge pages for the master's arena ({@code hugepages: {reserve: N}}): raising the kernel's pool, saying
 * what was got and why not more, and giving it back at shutdown.
 *
 * <p>Role: master.
 */
package io.vhostd.master.hugepages;
