import SagaLane

print("sagalane \(SagaLaneVersion.string)")
