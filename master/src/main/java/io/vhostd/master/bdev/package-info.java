/** Bdevs: the devices the master serves from (DESIGN §9 "bdev"). Role: master. */
package io.vhostd.master.bdev;
