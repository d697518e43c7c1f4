/* The unwinder linked into the library (libgcc_eh, so that it NEEDs only libc) is not the
 * one that runs a thread cancellation's unwind: glibc loads libgcc_s for that. libgcc_s
 * calls our frames' personality routine, which sets a frame's registers with our copy's
 * _Unwind_SetGR, and that aborts while our copy has never unwound itself (its table of
 * register sizes, filled at its first unwind, is empty). The library's link sends those
 * calls here (-Wl,--wrap=_Unwind_SetGR, build.rs): at the first, one backtrace of one
 * frame fills the table. Not earlier: the backtrace runs the unwinder's code and reads the
 * unwind tables, ~80 KiB of pages a process would otherwise never map. */
#include <stddef.h>
#include <unwind.h>

extern void __real__Unwind_SetGR(struct _Unwind_Context *context, int index, _Unwind_Word value);

static _Unwind_Reason_Code stop_at_once(struct _Unwind_Context *context, void *argument)
{
	(void)context;
	(void)argument;
	return _URC_END_OF_STACK;
}

void __wrap__Unwind_SetGR(struct _Unwind_Context *context, int index, _Unwind_Word value)
{
	static int ready;
	if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
		_Unwind_Backtrace(stop_at_once, NULL);
		__atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
	}
	__real__Unwind_SetGR(context, index, value);
}
