// A C++ host using the standard library's templates, some of which the Swift runtime inside
// libsagalane.a also instantiates: it links only if the archive keeps those symbols weak and
// global, as the C++ ABI expects.
#include "sagalane.h"

#include <iostream>
#include <optional>
#include <string>
#include <vector>

int main() {
    std::vector<std::string> names;
    for (int code = 0; code >= SL_EJSON; code--) names.push_back(std::string(sl_err_name(code)));
    std::optional<std::string> version;
    version = std::string(sl_version());
    bool ok = names.size() == 4 && names[1] == "SL_EINVAL" && *version == sl_version() &&
              sl_version_hex() == SL_VERSION_HEX;
    std::cout << "sagalane " << version.value() << " from C++: " << (ok ? "ok" : "FAILED") << "\n";
    return ok ? 0 : 1;
}
