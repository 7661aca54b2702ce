// SwiftPM needs one source file in a C target; the target's content is its header.
#include "WhaleCPUFeatures.h"
