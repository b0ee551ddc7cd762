import Testing
@testable import SagaLane

@Test func versionStringHasThreeParts() {
    #expect(SagaLaneVersion.string.split(separator: ".").count == 3)
}
