import SagaLaneTestSupport
import Testing
@testable import SagaLaneSupport

@Test func versionStringHasThreeParts() {
    #expect(SagaLaneVersion.string.split(separator: ".").count == 3)
}
